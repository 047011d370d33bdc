"""Command line and environment → what the module runs with.

Every option has an environment variable (``--hop-seconds`` ↔ ``AUSCULT_HOP_SECONDS``) so a
container is configured by its environment; the command line wins. Values from the environment
go through the same checks as typed ones. Detector and analysis options become a validated
:class:`~audioclassifier.settings.Settings` (the twin may change them later).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Mapping

from audioclassifier.argtypes import finite, int_at_least, number_in, positive
from audioclassifier.settings import DEVICES, PRECISIONS, Settings, SettingsError

__all__ = ["DEFAULT_MODEL", "ENV_PREFIX", "build_parser", "env_name", "parse_args", "settings_from_args"]

ENV_PREFIX = "AUSCULT_"
#: The model the module ships with: package data, so an installed wheel has it too.
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "model.onnx"

#: Options that are Settings fields (the twin can change them live).
SETTINGS_OPTIONS = ("threshold", "hop_seconds", "consecutive", "cooldown_seconds", "energy_gate_dbfs",
                    "telemetry_interval_seconds", "device", "precision", "machine")


def env_name(dest: str) -> str:
    """``hop_seconds`` → ``AUSCULT_HOP_SECONDS``."""
    return ENV_PREFIX + dest.upper()


def _speed(text: str) -> str:
    from audioclassifier.sources import parse_speed

    try:
        parse_speed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _bool(text: str) -> bool:
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("", "0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The parser; defaults come from ``env`` (the process environment by default)."""
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(
        prog="python -m audioclassifier",
        description="Auscult edge module: listens to a machine (microphone or recordings), scores log-mel "
                    "windows with an ONNX model and raises alerts. Without an IoT Hub connection it runs in "
                    "local mode: alerts.jsonl, telemetry.jsonl and clips/ under --local-out. Every option "
                    f"can also be set as an environment variable {ENV_PREFIX}<OPTION> (e.g. {ENV_PREFIX}HOP_SECONDS).",
    )

    group: Any = p  # the help section the next options go to

    def add(*flags: str, dest: str, default: Any = None, help: str, **kw: Any) -> None:
        value = env.get(env_name(dest))
        if value is not None and value != "":
            default = value
        group.add_argument(*flags, dest=dest, default=default, help=f"{help} [env {env_name(dest)}]", **kw)

    group = p.add_argument_group("audio source")
    add("--source", dest="source", default="mic", help="'mic', an audio file, or a folder of them (default mic)")
    add("--speed", dest="speed", default="realtime", type=_speed,
        help="file replay pace: realtime, max (as fast as possible) or a factor such as 10 (default realtime)")
    add("--mic-device", dest="mic_device", help="microphone by PortAudio index or (part of its) name")
    add("--sample-rate", dest="sample_rate", type=int_at_least(1000),
        help="microphone capture rate in Hz (default: the model's; resampled to it if different)")
    add("--channels", dest="channels", type=int_at_least(1), default=1, help="microphone channels to open (default 1)")
    add("--channel", dest="channel", type=int_at_least(0),
        help="use this channel (0-based) of the microphone or file; default: mix all down")
    add("--no-audio-seconds", dest="no_audio_seconds", type=positive, default=5.0,
        help="seconds without callbacks or with only digital zeros before the microphone counts as dead "
             "and is reopened (default 5)")

    group = p.add_argument_group("model and inference")
    add("--model", dest="model", default=str(DEFAULT_MODEL), help=f"ONNX model with an Auscult card (default {DEFAULT_MODEL})")
    add("--backend", dest="backend", default="auto", choices=("auto", "openvino", "onnxruntime"),
        help="inference runtime; auto = OpenVINO if it compiles the model, else onnxruntime (default auto)")
    add("--device", dest="device", default="AUTO", type=str.upper, choices=DEVICES,
        help="OpenVINO device (default AUTO)")
    add("--precision", dest="precision", default="f32", type=str.lower, choices=PRECISIONS,
        help="OpenVINO inference precision: f32 gives the scores the model card's threshold was fitted "
             "with on every CPU; bf16/f16, or 'device' (the device's own default: bf16 on Intel CPUs with "
             "AMX, f16 on GPUs), trade exactness for speed (default f32)")

    group = p.add_argument_group("detection (the module twin can change these live)")
    add("--threshold", dest="threshold", type=finite, help="alert threshold (default: the model card's)")
    add("--hop-seconds", dest="hop_seconds", type=positive, help="seconds between window starts (default 1)")
    add("--consecutive", dest="consecutive", type=int_at_least(1), help="windows over the threshold before an alert (default 2)")
    add("--cooldown-seconds", dest="cooldown_seconds", type=finite,
        help="audio seconds after an alert before the next one (default 30)")
    add("--energy-gate-dbfs", dest="energy_gate_dbfs", type=finite,
        help="windows quieter than this are 'silent' (machine off) and not scored (default -70)")
    add("--telemetry-interval-seconds", dest="telemetry_interval_seconds", type=positive,
        help="seconds of audio per telemetry message (default 60)")
    add("--machine", dest="machine", help="machine name in messages and clip names (default 'machine')")
    add("--calibrate-seconds", dest="calibrate_seconds", type=number_in(0.0, 3600.0), default=0.0,
        help="site calibration: score the first S seconds of audio as this machine's healthy sound (no "
             "alerts meanwhile) and set the threshold from them, as training does (default 0 = off)")
    add("--calibrate-percentile", dest="calibrate_percentile", type=number_in(50.0, 100.0, open_lo=True, open_hi=True), default=99.5,
        help="percentile of the gamma fit to the calibration scores that becomes the threshold (default 99.5)")

    group = out = p.add_argument_group("output")
    add("--local-out", dest="local_out", default="auscult-out",
        help="local mode folder for alerts.jsonl, telemetry.jsonl, clips/ (default ./auscult-out)")
    add("--window-log", dest="window_log",
        help="also write one JSON line per window (offsets, level, score, threshold) to this file")
    self_test = env.get(env_name("self_test"), "")
    try:
        self_test_default = _bool(self_test)
    except argparse.ArgumentTypeError as exc:
        p.error(f"{env_name('self_test')}: {exc}")
    out.add_argument("--self-test", dest="self_test", action="store_true", default=self_test_default,
                     help="check the model and front end, print a JSON report, exit 0 if all is well "
                          f"[env {env_name('self_test')}=1]")
    add("--log-level", dest="log_level", default="INFO", type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="log level (default INFO)")
    return p


def parse_args(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> argparse.Namespace:
    """Parse; values from the environment are held to the same choices as typed ones."""
    parser = build_parser(env)
    args = parser.parse_args(argv)
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if action.choices is not None and value is not None and value not in action.choices:
            parser.error(f"{env_name(action.dest)}={value!r}: choose from {', '.join(map(str, action.choices))}")
    return args


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The detection options given (command line or environment) as validated Settings."""
    given = {k: getattr(args, k) for k in SETTINGS_OPTIONS if getattr(args, k, None) is not None}
    try:
        return Settings.from_mapping(given)
    except SettingsError as exc:
        raise SettingsError(f"--{exc.field.replace('_', '-')}", exc.reason) from None
