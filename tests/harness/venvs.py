"""Fresh virtual environments holding the module's runtime pins only (modules/audioclassifier/requirements.txt).

The packages are installed with ``--no-deps`` and checked with ``pip check``, so a missing or
conflicting pin fails the test that asked for the environment, not a device's image build. The
environment is made from the base interpreter, and this environment's pip installs into it (pip's
cache is reused between runs), so nothing of the development environment (the editable install,
torch, librosa, scikit-learn) can help the code under test along.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.paths import REPO

REQUIREMENTS = REPO / "modules" / "audioclassifier" / "requirements.txt"
#: Packages of the training and development sets: none of them may be in the runtime environment.
DEV_ONLY = ("torch", "librosa", "sklearn", "matplotlib", "onnx", "pytest")


def run(cmd: list[str], *, timeout: float, **kw: object) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` capturing text output, with a timeout."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]


def clean_env() -> dict[str, str]:
    """This process's environment without what would point a child at the development venv."""
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}


def pip_into(python: Path) -> list[str]:
    """This environment's pip, installing into the environment of ``python``."""
    return [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]


def runtime_venv(where: Path) -> Path:
    """A new venv at ``where`` with exactly the runtime pins; returns its python. Asserts on failure."""
    base = getattr(sys, "_base_executable", sys.executable)
    made = run([base, "-m", "venv", "--without-pip", str(where)], timeout=120)
    assert made.returncode == 0, made.stderr
    python = where / "bin" / "python"
    env = clean_env()
    installed = run([*pip_into(python), "install", "--quiet", "--no-compile", "--no-deps", "-r", str(REQUIREMENTS)],
                    timeout=900, env=env)
    assert installed.returncode == 0, f"pip install -r requirements.txt failed:\n{installed.stdout}\n{installed.stderr}"
    checked = run([*pip_into(python), "check"], timeout=120, env=env)
    assert checked.returncode == 0, f"requirements.txt is not a complete, consistent set:\n{checked.stdout}"
    return python
