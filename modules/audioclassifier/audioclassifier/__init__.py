"""Auscult's edge module: listens to a machine, scores log-mel windows with an ONNX model, alerts.

Run it with ``python -m audioclassifier``. This package imports only the lean runtime set
(numpy, scipy, soundfile, soxr, onnxruntime/openvino, sounddevice, azure-*): never torch,
librosa or scikit-learn.
"""

__version__ = "0.1.0"
