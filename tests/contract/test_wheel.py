"""The distribution as pip installs it: a non-editable wheel in a fresh environment with the runtime pins.

Editable installs and the image (PYTHONPATH=/app) read the source tree, so a wheel that lacks a
subpackage or the default model would pass every other test. This one builds the wheel, installs
it with ``--no-deps`` next to the runtime pins (harness.venvs), and runs it from outside the
repository: every source file is installed, every runtime module imports, the console script's
self-test passes on the packaged default model, and ``python -m ml`` offers every verb with the
runtime set alone and synthesizes audio once the ``demo`` extra's scipy is added.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest

from harness.venvs import DEV_ONLY, REPO, clean_env, pip_into, run, runtime_venv

PACKAGES = {"audioclassifier": REPO / "modules" / "audioclassifier" / "audioclassifier", "ml": REPO / "ml"}


def source_files() -> set[str]:
    """Every file the two import packages hold in the repository, as wheel paths."""
    out = set()
    for name, root in PACKAGES.items():
        for p in root.rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix in {".py", ".onnx", ".typed", ".html", ".js", ".css"}:
                out.add(f"{name}/{p.relative_to(root).as_posix()}")
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # The dev environment's setuptools builds it (no build isolation: no download needed).
    built = run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                 "-w", str(out), str(REPO)], timeout=600, env=clean_env())
    assert built.returncode == 0, f"pip wheel failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    (whl,) = out.glob("auscult-*.whl")
    return whl


def test_wheel_ships_every_source_file_and_the_default_model(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(source_files() - names)
    assert not missing, f"the wheel lacks {len(missing)} file(s): {missing[:10]}"
    assert "audioclassifier/models/model.onnx" in names
    assert "audioclassifier/web/static/index.html" in names  # the live page (--http-port)
    assert not [n for n in names if n.startswith(("tests/", "bench/", "demo/", "cloud/"))]


@pytest.mark.slow
def test_wheel_runs_from_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    py = runtime_venv(tmp_path / "venv")
    installed = run([*pip_into(py), "install", "--quiet", "--no-deps", "--no-compile", str(wheel)],
                    timeout=300, env=clean_env())
    assert installed.returncode == 0, installed.stderr
    bindir = py.parent
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"}
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()

    # Every runtime module imports from site-packages (the demo, which plots, aside); ml's packages are there.
    probe = ("import importlib, importlib.util as u, pkgutil, json, audioclassifier, ml\n"
             "mods = [m.name for m in pkgutil.walk_packages(audioclassifier.__path__, 'audioclassifier.')]\n"
             "for m in mods:\n"
             "    if m not in ('audioclassifier.__main__', 'audioclassifier.demo'):\n"
             "        importlib.import_module(m)\n"
             "mls = [m.name for m in pkgutil.walk_packages(ml.__path__, 'ml.', onerror=lambda n: None) if m.ispkg]\n"
             f"print(json.dumps({{'files': [audioclassifier.__file__, ml.__file__], 'mods': mods, 'ml': mls,"
             f" 'dev': [m for m in {DEV_ONLY!r} if u.find_spec(m)]}}))\n")
    res = run([str(py), "-c", probe], timeout=120, env=env, cwd=cwd)
    assert res.returncode == 0, f"a module does not import from the installed wheel:\n{res.stderr[-4000:]}"
    info = json.loads(res.stdout)
    site = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], timeout=60,
                    env=env).stdout.strip())
    assert all(Path(f).is_relative_to(site) for f in info["files"]), info["files"]
    assert {"audioclassifier.hub", "audioclassifier.backends", "audioclassifier.runtime"} <= set(info["mods"])
    assert {"ml.cli", "ml.models"} <= set(info["ml"])
    assert info["dev"] == [], f"development-only packages in the runtime environment: {info['dev']}"

    # The console script, on the model packaged in the wheel.
    res = run([str(bindir / "audioclassifier"), "--self-test"], timeout=300, env=env, cwd=cwd)
    assert res.returncode == 0, f"audioclassifier --self-test failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    report = json.loads(res.stdout)
    assert report["ok"] is True and Path(report["model"]["path"]).is_relative_to(site)

    # python -m ml: every verb, and one that needs only the runtime set.
    res = run([str(py), "-m", "ml", "--help"], timeout=120, env=env, cwd=cwd)
    assert res.returncode == 0, res.stderr
    from ml.cli import VERBS

    assert all(verb in res.stdout for verb in VERBS), res.stdout
    import scipy  # ml synth's filters: the demo extra (the runtime set has no scipy)

    added = run([*pip_into(py), "install", "--quiet", "--no-deps", f"scipy=={scipy.__version__}"], timeout=600,
                env=clean_env())
    assert added.returncode == 0, added.stderr
    res = run([str(py), "-m", "ml", "synth", "--out", str(tmp_path / "syn"), "--machines", "1",
               "--clips-per-class", "1", "--labels", "normal", "--seconds", "2"], timeout=300, env=env, cwd=cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    assert list((tmp_path / "syn").rglob("*.wav"))
