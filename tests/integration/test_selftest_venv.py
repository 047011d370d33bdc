"""What the container's entry point would run, without Docker: ``python -m audioclassifier --self-test``
in a fresh virtualenv holding only modules/audioclassifier/requirements.txt (harness.venvs). The app is staged as the
Dockerfile's COPY lines lay it out (/app/audioclassifier, with the default model inside it) and run with the
Dockerfile's ENV and ENTRYPOINT, from a folder outside the repository, so nothing of the
development environment (the editable install, torch, librosa, scikit-learn) can help it along.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.manifest import dockerfile
from harness.paths import MODULE
from harness.venvs import DEV_ONLY, run, runtime_venv


@pytest.mark.slow
def test_entry_point_self_test_in_a_fresh_venv(tmp_path: Path) -> None:
    docker = dockerfile(MODULE / "Dockerfile.amd64")
    model = MODULE / docker["env"]["AUSCULT_MODEL"].removeprefix("/app/")
    assert model.is_file(), f"the default model {model.relative_to(MODULE.parents[1])} is missing: the image ships it"
    venv = tmp_path / "venv"
    py = runtime_venv(venv)

    # /app as the Dockerfile's COPY lines lay it out.
    app = tmp_path / "app"
    for sources, dest in docker["copy"]:
        if not dest.startswith("/app/"):
            continue  # the build stage's inputs (requirements, prune script)
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
    assert docker["env"]["PYTHONPATH"] == "/app:/opt/auscult/site"
    run_env["PYTHONPATH"] = str(app)  # the venv's site-packages stands in for /opt/auscult/site
    assert run_env["PYTHONPATH"] == str(app) and Path(run_env["AUSCULT_MODEL"]) == app / model.relative_to(MODULE)
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
    assert Path(report["model"]["path"]) == app / model.relative_to(MODULE)  # the image's model, via AUSCULT_MODEL
    assert report["model"]["backend"] in {"openvino", "onnxruntime"}
