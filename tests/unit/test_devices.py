"""``backend=auto``'s import-free probe: Intel GPU/NPU nodes in a sysfs/dev tree, and the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from audioclassifier.devices import Accelerator, choose_engine, find_accelerators

BOTH = {"openvino", "onnxruntime"}


def _node(root: Path, cls: str, name: str, vendor: str, *, dev: bool = True) -> None:
    d = root / "sys" / "class" / cls / name / "device"
    d.mkdir(parents=True)
    (d / "vendor").write_text(vendor + "\n")
    if dev:
        node = root / "dev" / ("dri" if cls == "drm" else "accel") / name
        node.parent.mkdir(parents=True, exist_ok=True)
        node.write_bytes(b"")


def test_finds_intel_render_nodes_and_npus_only(tmp_path: Path) -> None:
    _node(tmp_path, "drm", "renderD128", "0x8086")          # Intel iGPU
    _node(tmp_path, "drm", "renderD129", "0x10de")          # an NVIDIA GPU: not OpenVINO's
    _node(tmp_path, "drm", "card0", "0x8086")               # a display node, not a render node
    _node(tmp_path, "accel", "accel0", "0x8086")            # Intel NPU
    _node(tmp_path, "drm", "renderD130", "0x8086", dev=False)  # on the host, not mapped into the container
    found = find_accelerators(sys_root=tmp_path / "sys", dev_root=tmp_path / "dev")
    assert found == [Accelerator("GPU", str(tmp_path / "dev/dri/renderD128")),
                     Accelerator("NPU", str(tmp_path / "dev/accel/accel0"))]


def test_nothing_found_in_an_empty_or_unreadable_tree(tmp_path: Path) -> None:
    assert find_accelerators(sys_root=tmp_path / "none", dev_root=tmp_path / "none") == []
    (tmp_path / "sys/class/drm/renderD128/device").mkdir(parents=True)  # no vendor file
    assert find_accelerators(sys_root=tmp_path / "sys", dev_root=tmp_path / "dev") == []


@pytest.mark.parametrize("device,accels,installed,engine,says", [
    ("AUTO", [], BOTH, "onnxruntime", "CPU only"),
    ("CPU", [], BOTH, "onnxruntime", "CPU only"),
    ("AUTO", [Accelerator("GPU", "/dev/dri/renderD128")], BOTH, "openvino", "GPU (/dev/dri/renderD128)"),
    ("AUTO", [Accelerator("NPU", "/dev/accel/accel0")], {"onnxruntime"}, "onnxruntime", "CPU only"),
    ("GPU", [], BOTH, "openvino", "device GPU asked for"),
    ("NPU", [], {"onnxruntime"}, "onnxruntime", "OpenVINO is not installed"),
    ("AUTO", [], {"openvino"}, "openvino", "the one engine installed"),
])
def test_the_rule(device: str, accels: list[Accelerator], installed: set[str], engine: str, says: str) -> None:
    choice = choose_engine(device=device, accelerators=accels, installed=installed)
    assert choice.engine == engine and says in choice.why
