"""The edge module as a process, as a device runs it: ``python -m audioclassifier``.

:func:`run_module` runs it to the end and returns what it printed; :class:`ModuleProcess` starts
it in the background (runs numbered, each run's output in its own log file that the secret scans
read) for tests that stop brokers, kill it or talk to it while it runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from harness.paths import REPO

__all__ = ["ModuleProcess", "assert_no_secret_leaked", "hub_module", "hub_module_env", "module_command", "run_module",
           "synth_recording"]

P = TypeVar("P", bound="ModuleProcess")


def module_command(*args: str) -> list[str]:
    """The command line of the module with ``args``."""
    return [sys.executable, "-m", "audioclassifier", *args]


def run_module(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
               base_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the module with ``args`` until it ends; ``env`` is added to this process's environment
    (or to ``base_env``)."""
    full_env = {**(os.environ if base_env is None else base_env), **(env or {})}
    return subprocess.run(module_command(*args), capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=REPO)


class ModuleProcess:
    """Runs of the module in the background with a fixed environment; output in ``logs``."""

    def __init__(self, env: dict[str, str], logs: Path, *, defaults: tuple[str, ...] = ()) -> None:
        self.env = env
        self.logs = logs
        self.defaults = defaults
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self, *args: str) -> None:
        """Start run number ``runs + 1`` with the default arguments and ``args``."""
        self.runs += 1
        log = open(self.logs / f"module-{self.runs}.log", "wb")
        self.proc = subprocess.Popen(module_command(*self.defaults, *args), env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, cwd=REPO)
        log.close()

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def text(self) -> str:
        """Everything every run printed."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("module-*.log")))

    def alerts_emitted(self, run: int) -> int:
        """The alerts run ``run`` counted (its closing ``done:`` line)."""
        text = (self.logs / f"module-{run}.log").read_text()
        found = re.findall(r"done: \d+ windows, \d+ scored, (\d+) alerts", text)
        assert found, f"run {run} did not finish:\n{text[-3000:]}"
        return int(found[-1])


def synth_recording(path: Path, *, seconds: float, fault: str = "normal", fault_start: float = 0.0,
                    ramp_seconds: float = 3.0, seed: int = 3) -> Path:
    """``python -m ml synth --long-seconds ...``: one machine recording with a fault from ``fault_start``."""
    subprocess.run([sys.executable, "-m", "ml", "synth", "--long-seconds", f"{seconds:g}", "--fault", fault,
                    "--fault-start", f"{fault_start:g}", "--ramp-seconds", f"{ramp_seconds:g}", "--seed", str(seed),
                    "--out", str(path)], check=True, capture_output=True, cwd=REPO, timeout=120)
    return path


def hub_module_env(edge_env: dict[str, str], *, blob_connection_string: str, container: str) -> dict[str, str]:
    """This process's environment without any module or edge variable, plus the edge environment of the
    harness (the broker) and a blob container in Azurite: a module run under IoT Edge."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUSCULT_", "IOTEDGE_", "EdgeHub", "EdgeModule"))}
    env.update(edge_env)
    env.update({"AUSCULT_BLOB_CONNECTION_STRING": blob_connection_string, "AUSCULT_BLOB_CONTAINER": container,
                "PYTHONUNBUFFERED": "1"})
    return env


def assert_no_secret_leaked(module: ModuleProcess, hub: object) -> None:
    """Nothing the module printed, reported or sent holds a secret (harness.responder.HubResponder ``hub``)."""
    import json

    from audioclassifier.hub.redact import find_secrets

    reported, messages = hub.reported, hub.messages
    everything = module.text() + json.dumps(reported) + "".join(x.raw.decode() + x.topic for x in messages)
    assert find_secrets(everything) == [], "a secret leaked"


@contextmanager
def hub_module(cls: type[P], *, edge_env: dict[str, str], azurite: object, hub: object, tmp_path: Path,
               prefix: str) -> Iterator[P]:
    """A ``cls`` module process under the harness's IoT Edge (:func:`hub_module_env`) with a blob container of
    its own in Azurite (named ``<prefix>-<random>``: Azurite lives for the session) and its logs in
    ``tmp_path/logs``; killed afterwards, then checked for leaked secrets (:func:`assert_no_secret_leaked`)."""
    env = hub_module_env(edge_env, blob_connection_string=azurite.connection_string,  # type: ignore[attr-defined]
                         container=f"{prefix}-{uuid.uuid4().hex[:8]}")
    logs = tmp_path / "logs"
    logs.mkdir()
    m = cls(env, logs)
    try:
        yield m
    finally:
        m.kill()
    assert_no_secret_leaked(m, hub)
