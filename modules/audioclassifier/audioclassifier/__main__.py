"""``python -m audioclassifier``: the edge module's entry point (see ``--help`` and README.md).

Exit status: 0 when the source ended or a signal stopped the module, 1 when the runtime failed,
2 for a configuration problem (bad option, missing or malformed model, unusable source);
``--self-test``: 0 if every check passed, 1 otherwise, with a JSON report on stdout.
"""

from __future__ import annotations

import os

# One thread per numeric library, set before numpy loads: one process, one inference thread.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Mapping  # noqa: E402

log = logging.getLogger("audioclassifier")


def _hub_wanted(env: Mapping[str, str]) -> bool:
    """Cheap gate: only look at the IoT Hub side (and import azure) if its variables are there."""
    if any(k.startswith("IOTEDGE_") for k in env) or env.get("EdgeHubConnectionString"):
        from audioclassifier.hub import hub_configured

        return bool(hub_configured(env))
    return False


def make_sink(local_out: Path, env: Mapping[str, str]) -> Any:
    """IoT Hub sink inside IoT Edge (or with a connection string), otherwise local mode."""
    if _hub_wanted(env):
        from audioclassifier.hub import HubSink

        return HubSink(env=env)
    from audioclassifier.sinks import LocalSink

    return LocalSink(local_out)


def _self_test(args: Any) -> int:
    from audioclassifier.backends import ModelError, load_model
    from audioclassifier.selftest import run_self_test

    try:
        model = load_model(args.model, backend=args.backend, device=args.device, precision=args.precision)
    except (ModelError, ValueError) as exc:
        print(json.dumps({"ok": False, "error": str(exc)}, indent=2))
        return 1
    report = run_self_test(model)
    print(json.dumps(report, indent=2))
    failed = [k for k, v in report["checks"].items() if not v["ok"]]
    if failed:
        log.error("self-test failed: %s", ", ".join(f"{k} ({report['checks'][k]['detail']})" for k in failed))
    return 0 if report["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    from audioclassifier.config import parse_args, settings_from_args
    from audioclassifier.settings import SettingsError

    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.self_test:
        return _self_test(args)
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"python -m audioclassifier: error: {exc}", file=sys.stderr)
        return 2

    from audioclassifier.backends import ModelError, load_model
    from audioclassifier.sources import SourceError

    try:
        model = load_model(args.model, backend=args.backend, device=settings.device, precision=settings.precision)
    except ModelError as exc:
        log.error("%s", exc)
        return 2
    sr = model.card.features.sample_rate
    try:
        if args.source == "mic":
            from audioclassifier.mic import MicSource

            source: Any = MicSource(sample_rate=sr, device=args.mic_device, capture_rate=args.sample_rate,
                                    channels=args.channels, channel=args.channel,
                                    dead_seconds=args.no_audio_seconds)
        else:
            from audioclassifier.sources import FileSource, parse_speed

            source = FileSource(args.source, sample_rate=sr, channel=args.channel, speed=parse_speed(args.speed))
    except (SourceError, ValueError) as exc:
        log.error("source %s: %s", args.source, exc)
        return 2

    env = dict(os.environ)
    try:
        sink = make_sink(Path(args.local_out), env)
    except (OSError, ValueError) as exc:
        log.error("output: %s", exc)
        return 2
    from audioclassifier.runtime import Runtime

    state_dir = Path(getattr(sink, "root", None) or args.local_out)
    try:
        runtime = Runtime(source=source, model=model, settings=settings, sink=sink, backend=args.backend,
                          state_path=state_dir / "sequence.json",
                          window_log=Path(args.window_log) if args.window_log else None)
    except OSError as exc:
        log.error("output: %s", exc)
        sink.close()
        return 2

    if args.calibrate_seconds:
        from audioclassifier.calibration import CalibrationError

        try:
            runtime.start_calibration(float(args.calibrate_seconds), float(args.calibrate_percentile))
        except CalibrationError as exc:
            log.error("--calibrate-seconds: %s", exc)
            sink.close()
            return 2
    start = getattr(sink, "start", None)
    if start is not None:  # the hub side serves the twin and the methods from here on
        start(runtime)

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("%s: finishing", signal.Signals(signum).name)
        runtime.stop()
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return runtime.run()
    finally:
        sink.close()


if __name__ == "__main__":
    sys.exit(main())
