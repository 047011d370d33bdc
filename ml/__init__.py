"""Auscult's training toolkit: ``python -m ml <verb>`` (synth, convert, train, evaluate, predict, ...).

The log-mel front end, audio input and model card come from the module package
(:mod:`audioclassifier`), so training and the edge runtime compute features the same way.
"""

__all__: list[str] = []
