"""What inference hardware this machine offers, found without importing an inference runtime.

``backend="auto"`` must not pay OpenVINO's import (~0.3 s and ~50 MB) to learn that a machine has
only a CPU. The Linux kernel already says it: an Intel GPU is a DRM render node whose PCI vendor
is Intel (``/sys/class/drm/renderD*/device/vendor`` = ``0x8086``), an Intel NPU an ``accel``
device (``/sys/class/accel/accel*``, the ``intel_vpu`` driver). A node only counts when its
``/dev`` file is there and openable (a container sees the host's /sys, but only the devices the
deployment maps in). Which engines are installed is a ``find_spec`` lookup, also import-free.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Accelerator", "EngineChoice", "choose_engine", "find_accelerators", "installed_engines"]

INTEL_PCI_VENDOR = "0x8086"


@dataclass(frozen=True)
class Accelerator:
    """An OpenVINO-capable device: its OpenVINO name (GPU, NPU) and the /dev node found."""

    kind: str
    node: str


@dataclass(frozen=True)
class EngineChoice:
    """The engine ``auto`` takes, and why (the model's ``note``, reported in the twin)."""

    engine: str
    why: str


def find_accelerators(*, sys_root: str | os.PathLike[str] = "/sys",
                      dev_root: str | os.PathLike[str] = "/dev") -> list[Accelerator]:
    """Intel GPUs and NPUs that this process can open (the roots are parameters for tests)."""
    found = []
    for kind, cls, prefix in (("GPU", "drm", "renderD"), ("NPU", "accel", "accel")):
        for entry in sorted(Path(sys_root, "class", cls).glob(f"{prefix}*")):
            try:
                vendor = (entry / "device" / "vendor").read_text().strip().lower()
            except OSError:
                continue
            node = Path(dev_root, "dri" if cls == "drm" else "accel", entry.name)
            if vendor == INTEL_PCI_VENDOR and node.exists() and os.access(node, os.R_OK | os.W_OK):
                found.append(Accelerator(kind, str(node)))
    return found


def installed_engines() -> set[str]:
    """The inference engines importable here (without importing them)."""
    return {name for name in ("openvino", "onnxruntime") if importlib.util.find_spec(name) is not None}


def choose_engine(*, device: str, accelerators: list[Accelerator], installed: set[str]) -> EngineChoice:
    """``auto``'s rule: OpenVINO when an accelerator is asked for or present, else the lighter engine.

    * ``device`` other than AUTO/CPU (GPU, NPU, HETERO:..., AUTO:GPU,...): OpenVINO, asked for;
    * an Intel GPU or NPU this process can open: OpenVINO (AUTO then uses it);
    * a CPU only: onnxruntime, which starts in half the time and memory and scores a window in
      less CPU (``bench/module.py``); OpenVINO when onnxruntime is not installed (the OpenVINO image).
    """
    if not installed:
        return EngineChoice("onnxruntime", "auto: no inference engine is installed (onnxruntime or openvino)")
    only = next(iter(installed)) if len(installed) == 1 else None
    if device.upper() not in ("AUTO", "CPU"):
        if "openvino" in installed:
            return EngineChoice("openvino", f"auto: device {device} asked for: OpenVINO")
        return EngineChoice("onnxruntime", f"auto: device {device} asked for but OpenVINO is not installed; "
                                           "onnxruntime on the CPU")
    if accelerators and "openvino" in installed:
        names = ", ".join(f"{a.kind} ({a.node})" for a in accelerators)
        return EngineChoice("openvino", f"auto: OpenVINO, for the Intel {names} found")
    if only == "openvino":
        return EngineChoice("openvino", "auto: OpenVINO (the one engine installed), on the CPU")
    return EngineChoice("onnxruntime", "auto: CPU only (no Intel GPU or NPU found): onnxruntime")
