"""What the container's entry point would run, without Docker: ``python -m audioclassifier --self-test``
in a fresh virtualenv holding only modules/audioclassifier/requirements.txt.

The packages are installed with ``--no-deps`` and checked with ``pip check``, so a missing or
conflicting pin fails here rather than in a device's image build. The app is staged as the
Dockerfile's COPY lines lay it out (/app/audioclassifier, /app/models) and run with the
Dockerfile's ENV and ENTRYPOINT, from a folder outside the repository, so nothing of the
development environment (the editable install, torch, librosa, scikit-learn) can help it along.
pip's cache is reused between runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_manifest import MODULE, dockerfile

REQUIREMENTS = MODULE / "requirements.txt"
DEV_ONLY = ("torch", "librosa", "sklearn", "matplotlib", "onnx", "pytest")


def run(cmd: list[str], *, timeout: float, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]


@pytest.mark.slow
def test_entry_point_self_test_in_a_fresh_venv(tmp_path: Path) -> None:
    docker = dockerfile(MODULE / "Dockerfile.amd64")
    model = MODULE / "models" / docker["env"]["AUSCULT_MODEL"].removeprefix("/app/models/")
    assert model.is_file(), f"the default model {model.relative_to(MODULE.parents[1])} is missing: the image ships it"

    # A bare venv from the base interpreter; this environment's pip installs into it.
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    made = run([base, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    assert made.returncode == 0, made.stderr
    py = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(py), "--disable-pip-version-check"]
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    installed = run([*pip, "install", "--quiet", "--no-compile", "--no-deps", "-r", str(REQUIREMENTS)],
                    timeout=900, env=env)
    assert installed.returncode == 0, f"pip install -r requirements.txt failed:\n{installed.stdout}\n{installed.stderr}"
    checked = run([*pip, "check"], timeout=120, env=env)
    assert checked.returncode == 0, f"requirements.txt is not a complete, consistent set:\n{checked.stdout}"

    # /app as the Dockerfile's COPY lines lay it out.
    app = tmp_path / "app"
    for sources, dest in docker["copy"]:
        if dest == "/app/requirements.txt":
            continue
        assert dest.startswith("/app/"), dest
        (src,) = sources
        shutil.copytree(MODULE / src, app / dest.removeprefix("/app/"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    def host_path(value: str) -> str:
        """A path of the image (/app, /var/lib/auscult) -> its stand-in under tmp_path; others unchanged."""
        for root, there in (("/app", app), ("/var/lib/auscult", tmp_path / "var-lib-auscult")):
            if value == root or value.startswith(root + "/"):
                return str(there / value[len(root):].lstrip("/"))
        return value

    # HOME: a folder that does not exist, so nothing can come from a home (the image's user has a
    # read-only one holding only OpenVINO's telemetry opt-out; tests/test_image.py checks that).
    run_env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "nonexistent"), "LANG": "C.UTF-8"}
    run_env.update({k: host_path(v) for k, v in docker["env"].items() if not k.startswith("PIP_")})
    assert run_env["PYTHONPATH"] == str(app) and Path(run_env["AUSCULT_MODEL"]) == app / "models" / model.name
    assert run_env["AUSCULT_SPOOL_DIR"].startswith(str(tmp_path))
    workdir = tmp_path / "cwd"
    workdir.mkdir()

    # Every module of the package imports with the runtime set alone (the demo, which plots, aside).
    probe = ("import audioclassifier, importlib, importlib.util as u, pkgutil\n"
             "print(audioclassifier.__file__)\n"
             f"print([m for m in {DEV_ONLY!r} if u.find_spec(m)])\n"
             "for m in pkgutil.walk_packages(audioclassifier.__path__, 'audioclassifier.'):\n"
             "    if m.name not in ('audioclassifier.__main__', 'audioclassifier.demo'):\n"
             "        importlib.import_module(m.name)\n")
    where = run([str(py), "-c", probe], timeout=120, env=run_env, cwd=workdir)
    assert where.returncode == 0, f"a module does not import with the runtime set:\n{where.stderr[-4000:]}"
    file_line, extras = where.stdout.splitlines()[:2]
    assert Path(file_line).is_relative_to(app), f"imported {file_line}, not the staged app"
    assert extras == "[]", f"development-only packages in the runtime set: {extras}"

    entry = docker["entrypoint"]
    assert entry[0] == "python"
    result = run([str(py), *entry[1:], "--self-test"], timeout=300, env=run_env, cwd=workdir)
    assert result.returncode == 0, (f"`{' '.join(entry)} --self-test` failed ({result.returncode}):\n"
                                    f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    report = json.loads(result.stdout)
    assert report["ok"] is True and all(c["ok"] for c in report["checks"].values())
    assert Path(report["model"]["path"]) == app / "models" / model.name  # the image's model, via AUSCULT_MODEL
    assert report["model"]["backend"] in {"openvino", "onnxruntime"}
