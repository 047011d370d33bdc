"""The container image, built and run for real: ``make test-image`` (left out of ``make test``).

tools/image.sh builds both amd64 images as ``make image`` does (docker where a Docker engine answers,
else podman, through ../shared/tools/container-base.sh where that exists) and runs the containers the
same way: the default image (Dockerfile.amd64: onnxruntime) and the OpenVINO image
(Dockerfile.amd64.openvino, for Intel GPUs and NPUs). Checked in each running container: the
self-test with ``backend auto`` taking the image's one engine, the user it runs as, a read-only root
filesystem, a recording replayed into alerts and clips, no training libraries, no scipy, no
telemetry warnings from the inference libraries, and the size (the default image: at most 300 MB). Skips only where the machine cannot run
containers at all (tools/image.sh exits 77 and says why).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from harness.paths import REPO

pytestmark = pytest.mark.image

SCRIPT = REPO / "tools" / "image.sh"
NO_ENGINE = 77  # tools/image.sh: this machine cannot run containers
TRAINING = ("torch", "librosa", "sklearn", "matplotlib", "onnx", "scipy")  # import names
TRAINING_DISTRIBUTIONS = {"torch", "librosa", "scikit-learn", "matplotlib", "onnx", "scipy"}
#: image variant (module.json platform) -> (its one inference engine, its size budget in MB)
VARIANTS = {"amd64": ("onnxruntime", 300), "amd64.openvino": ("openvino", 450)}
WAV_HEADER = 44  # bytes: a clip holds more than that


def run(cmd: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass(frozen=True)
class Image:
    platform: str
    tag: str
    engine: tuple[str, ...]  # the command prefix: tools/image.sh engine
    podman: bool

    def run(self, *args: str, volumes: tuple[str, ...] = (), entrypoint: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``run --rm`` with a read-only root filesystem and no network; the spool is the image's VOLUME.

        podman mounts tmpfs on /tmp, /var/tmp and /run under --read-only unless told not to; docker
        does not, and neither does IoT Edge's ReadonlyRootfs, so neither does this.
        """
        opts = ["--rm", "--read-only", "--network", "none"]
        if self.podman:
            opts.append("--read-only-tmpfs=false")
        for v in volumes:
            opts += ["-v", v]
        if entrypoint:
            opts += ["--entrypoint", entrypoint]
        return run([*self.engine, "run", *opts, self.tag, *args], timeout=timeout)


@pytest.fixture(scope="module", params=list(VARIANTS))
def image(request: pytest.FixtureRequest) -> Image:
    platform = request.param
    built = run([str(SCRIPT), "build", platform], timeout=3600)
    if built.returncode == NO_ENGINE:
        pytest.skip(built.stderr.strip())
    assert built.returncode == 0, f"tools/image.sh build failed:\n{built.stdout[-4000:]}\n{built.stderr[-4000:]}"
    print(built.stdout.strip().splitlines()[-1])  # image.sh: <tag> built in N s, N MB
    tag = run([str(SCRIPT), "tag", platform], timeout=60).stdout.strip()
    engine = (str(SCRIPT), "engine")
    version = run([*engine, "--version"], timeout=60)
    assert version.returncode == 0, version.stderr
    return Image(platform=platform, tag=tag, engine=engine, podman=version.stdout.lower().startswith("podman"))


def demo() -> ModuleType:
    """demo/run_demo.py, for its scenario: the recording it synthesizes and when its fault starts."""
    spec = importlib.util.spec_from_file_location("run_demo", REPO / "demo" / "run_demo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backend", ["auto", "openvino", "onnxruntime"])
def test_self_test_passes_read_only_without_telemetry_warnings(image: Image, backend: str) -> None:
    engine = VARIANTS[image.platform][0]
    result = image.run("--self-test", "--backend", backend)
    if backend not in ("auto", engine):  # the other engine is not in this image: a clear refusal
        said = (result.stdout + result.stderr).lower()
        assert result.returncode != 0 and f"{backend} is not installed" in said, result
        return
    assert result.returncode == 0, f"--self-test failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    assert report["ok"] is True and all(c["ok"] for c in report["checks"].values())
    assert report["model"]["backend"] == engine and report["model"]["path"] == "/app/audioclassifier/models/model.onnx"
    # OpenVINO's "Failed to find location of the openvino_telemetry file", onnxruntime's "Failed to
    # persist telemetry device ID": what either prints when its telemetry is not switched off.
    assert "telemetry" not in result.stderr.lower(), result.stderr


def test_runs_as_uid_10001_in_the_audio_group(image: Image) -> None:
    result = image.run("-c", "id -u; id -Gn", entrypoint="sh")
    assert result.returncode == 0, result.stderr
    uid, groups = result.stdout.splitlines()
    assert uid == "10001"
    assert "audio" in groups.split()


def test_replays_a_mounted_recording_into_alerts_and_clips(image: Image, tmp_path: Path) -> None:
    scenario = demo()
    wav, out = tmp_path / "machine.wav", tmp_path / "out"
    synth = run([sys.executable, "-m", "ml", "synth", "--long-seconds", f"{scenario.SECONDS:g}", "--fault",
                 scenario.FAULT, "--fault-start", f"{scenario.FAULT_START:g}", "--seed", "1", "--machine-id", "0",
                 "--out", str(wav)], timeout=300)
    assert synth.returncode == 0, synth.stderr
    out.mkdir()
    out.chmod(0o777)  # the container's user (uid 10001) writes here
    result = image.run("--source", "/data/x.wav", "--speed", "max", "--local-out", "/out",
                       volumes=(f"{wav}:/data/x.wav:ro", f"{out}:/out"))
    assert result.returncode == 0, result.stderr[-4000:]
    alerts = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert alerts, f"no alert, although a {scenario.FAULT} fault develops from {scenario.FAULT_START:g} s"
    assert all(a["audio_offset_seconds"] >= scenario.FAULT_START for a in alerts), alerts
    for alert in alerts:
        clip = out / "clips" / alert["clip"]
        assert clip.is_file(), f"alert {alert['seq']}: its clip {alert['clip']} was not written"
        assert clip.stat().st_size > WAV_HEADER, f"alert {alert['seq']}: its clip is empty"


def test_no_training_libraries_and_the_image_size(image: Image) -> None:
    probe = (f"import importlib\nfor m in {TRAINING!r}:\n"
             "    try:\n        importlib.import_module(m)\n        print(m)\n"
             "    except ImportError:\n        pass\n")
    imported = image.run("-c", probe, entrypoint="python")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == [], f"training libraries in the image: {imported.stdout.split()}"
    listed = image.run("-m", "pip", "list", "--format", "json", entrypoint="python")
    assert listed.returncode == 0, listed.stderr
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    engine, budget = VARIANTS[image.platform]
    other = {"onnxruntime", "openvino"} - {engine}
    assert {engine, "numpy"} <= names  # the listing is the real one
    assert names.isdisjoint(TRAINING_DISTRIBUTIONS | other), names & (TRAINING_DISTRIBUTIONS | other)

    size = run([*image.engine, "image", "inspect", "--format", "{{.Size}}", image.tag], timeout=60)
    assert size.returncode == 0, size.stderr
    mb = int(size.stdout.strip()) // 1_000_000
    print(f"image_size_mb[{image.platform}]: {mb}")
    assert mb <= budget, f"the {image.platform} image grew to {mb} MB (budget {budget} MB)"
