"""``python -m audioclassifier``: the edge module's entry point (see ``--help`` and docs/module.md).

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
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

if TYPE_CHECKING:
    from audioclassifier.config import Config

log = logging.getLogger("audioclassifier")


def _self_test(config: Config) -> int:
    from audioclassifier.backends import ModelError, load_model
    from audioclassifier.selftest import run_self_test

    try:
        model = load_model(config.model, backend=config.backend, device=config.settings.device,
                           precision=config.settings.precision)
    except (ModelError, ValueError) as exc:
        print(json.dumps({"ok": False, "error": str(exc)}, indent=2))
        return 1
    report = run_self_test(model)
    print(json.dumps(report, indent=2))
    failed = [k for k, v in report["checks"].items() if not v["ok"]]
    if failed:
        log.error("self-test failed: %s", ", ".join(f"{k} ({report['checks'][k]['detail']})" for k in failed))
    return 0 if report["ok"] else 1


def _source(config: Config, card: Any) -> Any:
    sample_rate = card.features.sample_rate
    channel = config.channel if config.channel is not None else card.channel  # the card's training channel
    if config.source == "mic":
        from audioclassifier.mic import MicSource

        channel = channel if config.channel is not None or (channel or 0) < (config.channels or 1) else None
        return MicSource(sample_rate=sample_rate, device=config.mic_device, capture_rate=config.sample_rate,
                         channels=config.channels, channel=channel, dead_seconds=config.no_audio_seconds)
    from audioclassifier.sources import FileSource, parse_speed

    return FileSource(config.source, sample_rate=sample_rate, channel=channel, speed=parse_speed(config.speed),
                      window_seconds=card.window_seconds)


def _web(config: Config, live: Any, runtime: Any, hub: Any, clip_dir: Path) -> Any:
    """The live page and REST API (``--http-port``), serving; None (logged) if the port cannot be bound."""
    from audioclassifier.config import is_loopback
    from audioclassifier.web import WebContext, WebServer

    http = config.http
    assert http is not None
    if hub is not None:
        from audioclassifier.hub.reporting import redacted

        def status() -> dict[str, Any]:
            return dict(redacted(hub.status()))  # getStatus's answer
    else:
        status = runtime.status
    ctx = WebContext(status=status, feed=live, clip_dir=clip_dir, in_force=runtime.in_force, token=http.token,
                     loopback_only=is_loopback(http.bind), max_upload_bytes=http.max_upload_bytes)
    server = WebServer(ctx, port=http.port, bind=http.bind)
    try:
        server.start()
    except OSError as exc:
        log.error("--http-port %d on %s: %s", http.port, http.bind, exc)
        server.close()
        return None
    return server


def main(argv: list[str] | None = None) -> int:
    """The composition root: one configuration load, then every part built and wired here."""
    from audioclassifier.config import ConfigError, load_config

    try:
        config = load_config(argv, os.environ)
    except ConfigError as exc:
        print(f"python -m audioclassifier: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.self_test:
        return _self_test(config)

    from audioclassifier.backends import ModelError, load_model
    from audioclassifier.sources import SourceError

    settings = config.settings
    model_cache = config.state_dir / "model-cache"  # OpenVINO's compiled models (nothing for onnxruntime)
    try:
        model = load_model(config.model, backend=config.backend, device=settings.device, precision=settings.precision,
                           cache_dir=model_cache)
    except ModelError as exc:
        log.error("%s", exc)
        return 2
    try:
        source = _source(config, model.card)
    except (SourceError, ValueError) as exc:
        log.error("source %s: %s", config.source, exc)
        return 2

    hub: Any = None
    try:
        if config.hub is not None:
            from audioclassifier.hub import HubApp

            hub = HubApp(config.hub)
            sink: Any = hub.sink
        else:
            from audioclassifier.sinks import LocalSink

            sink = LocalSink(config.local_out)
    except (OSError, ValueError) as exc:
        log.error("output: %s", exc)
        return 2
    state_dir = config.state_dir
    from audioclassifier.alertwindows import AlertWindows
    from audioclassifier.feedback import Feedback
    from audioclassifier.onsite import OnsiteLearning
    from audioclassifier.runtime import Runtime

    # learned normal models live next to the sequence counters: <state dir>/learned/<machine>.npz
    onsite = OnsiteLearning(directory=Path(state_dir) / "learned", seconds=config.learn_seconds,
                            relearn=config.relearn, alerts_per_day=config.learn_alerts_per_day,
                            on_change=hub.on_learning if hub is not None else None)
    live = None
    if config.http is not None:
        from audioclassifier.live import LiveFeed

        live = LiveFeed()
    try:
        # feedback's memory of the recent alerts and the verdicts: <state dir>/feedback/
        feedback_dir = Path(state_dir) / "feedback"
        runtime = Runtime(source=source, model=model, settings=settings, sink=sink, backend=config.backend,
                          state_path=Path(state_dir) / "sequence.json", window_log=config.window_log, onsite=onsite,
                          alert_windows=AlertWindows(feedback_dir / "alerts", keep=config.feedback_alerts),
                          feedback=Feedback(feedback_dir), feed=live,
                          bands_dir=Path(state_dir) / "bands", on_health=hub.on_health if hub is not None else None,
                          model_cache=model_cache)
    except OSError as exc:
        log.error("output: %s", exc)
        (hub or sink).close()
        return 2
    web = None
    if config.http is not None and live is not None:
        web = _web(config, live, runtime, hub, Path(sink.clip_dir))
        if web is None:
            (hub or sink).close()
            return 2

    if config.calibrate_seconds:
        from audioclassifier.calibration import CalibrationError

        try:
            runtime.start_calibration(config.calibrate_seconds, config.calibrate_percentile,
                                      on_done=hub.on_calibration_done if hub is not None else None)
        except CalibrationError as exc:
            log.error("--calibrate-seconds: %s", exc)
            (hub or sink).close()
            return 2
    if hub is not None:
        hub.start(runtime)  # the twin and the methods are served from here on
        # Twin first: the desired properties (a threshold) are in force before the first window is
        # scored; without the hub, after a bounded wait, the ones the last run kept are.
        hub.wait_for_twin(config.hub.twin_wait_seconds if config.hub is not None else 0.0)

    from audioclassifier.stopsignal import stop_on_signals

    def on_stop(name: str) -> None:
        log.info("%s: finishing", name)
        runtime.stop()

    with stop_on_signals(on_stop):  # a second signal ends the process at once
        try:
            return runtime.run()
        finally:
            if web is not None:
                web.close()
            (hub or sink).close()


if __name__ == "__main__":
    sys.exit(main())
