"""One configuration load: command line + environment → one frozen :class:`Config`.

Every option has an environment variable (``--hop-seconds`` ↔ ``AUSCULT_HOP_SECONDS``) so a
container is configured by its environment; the command line wins. Values from the environment
go through the same checks as typed ones (the :mod:`constraints` table renders the ``type=`` of
every setting). :func:`load_config` is the only reader of the environment: nothing below the
composition root (``__main__``) looks at ``os.environ``; the IoT Hub side gets a :class:`HubConfig`
(spool, quotas, reconnect, upload target, CA file), or None in local mode.

The detection settings given at start are :attr:`Config.settings`; they are also the values a
twin ``null`` returns a setting to (:meth:`Settings.apply_patch`'s ``start``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audioclassifier.constraints import OPTIONS, SETTINGS, Param
from audioclassifier.desired import load_desired
from audioclassifier.errors import FatalError
from audioclassifier.settings import Settings, SettingsError

__all__ = ["DEFAULT_MODEL", "DEFAULT_SPOOL_DIR", "DESIRED_FILE", "ENV_PREFIX", "MIN_TOKEN_LENGTH", "Config",
           "ConfigError", "HttpConfig", "HubConfig", "UploadTarget", "build_parser", "env_name", "http_config",
           "hub_config", "hub_configured", "is_loopback", "load_config"]

ENV_PREFIX = "AUSCULT_"
#: The model the module ships with: package data, so an installed wheel has it too.
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "model.onnx"
DEFAULT_SPOOL_DIR = "/var/lib/auscult/spool"
#: The last desired properties, under the spool dir (:mod:`audioclassifier.desired`).
DESIRED_FILE = "desired.json"

#: What the IoT Edge runtime sets in a module's container (the SDK needs all of them).
EDGE_VARIABLES = ("IOTEDGE_IOTHUBHOSTNAME", "IOTEDGE_DEVICEID", "IOTEDGE_MODULEID", "IOTEDGE_GATEWAYHOSTNAME",
                  "IOTEDGE_MODULEGENERATIONID", "IOTEDGE_WORKLOADURI", "IOTEDGE_APIVERSION")

#: Twin settings that are also start-up options (nested ones, upload.* and model.*, are twin only).
SETTINGS_OPTIONS = tuple(name for name in SETTINGS if "." not in name)


class ConfigError(FatalError, ValueError):
    """A configuration that cannot work (bad option or variable): the module exits 2."""


def env_name(dest: str) -> str:
    """``hop_seconds`` → ``AUSCULT_HOP_SECONDS``."""
    return ENV_PREFIX + dest.upper()


def hub_configured(env: Mapping[str, str]) -> bool:
    """True inside IoT Edge (``IOTEDGE_*``) or with ``EdgeHubConnectionString`` +
    ``EdgeModuleCACertificateFile`` (the SDK's development fallback); otherwise local mode."""
    if all(env.get(v) for v in EDGE_VARIABLES):
        return True
    return bool(env.get("EdgeHubConnectionString") and env.get("EdgeModuleCACertificateFile"))


@dataclass(frozen=True)
class UploadTarget:
    """Where clips go: one of a blob connection string, a container SAS URL, or a device
    connection string (IoT Hub file upload). Secrets: never in ``repr`` or logs."""

    blob_connection_string: str = field(default="", repr=False)
    blob_container: str = "auscult-clips"
    container_sas_url: str = field(default="", repr=False)
    device_connection_string: str = field(default="", repr=False)

    @property
    def kind(self) -> str | None:
        """``blob``, ``sas``, ``file-upload`` or None (clips stay in the spool)."""
        if self.blob_connection_string:
            return "blob"
        if self.container_sas_url:
            return "sas"
        if self.device_connection_string:
            return "file-upload"
        return None


@dataclass(frozen=True)
class HubConfig:
    """The IoT Hub side's configuration (the SDK reads the IoT Edge variables itself).

    ``desired``: the desired properties kept by the last run (``<spool_dir>/desired.json``), put
    in force at start until the twin itself arrives; ``twin_wait_seconds``: how long the start
    waits for the twin before the first window is scored."""

    spool_dir: Path = Path(DEFAULT_SPOOL_DIR)
    spool_quota_bytes: int = 500 * 2**20
    outbox_quota_bytes: int = 20 * 2**20
    reconnect_seconds: float = 10.0
    ca_file: str | None = None
    upload: UploadTarget = field(default_factory=UploadTarget)
    twin_wait_seconds: float = 5.0
    desired: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def desired_path(self) -> Path:
        return Path(self.spool_dir) / DESIRED_FILE


#: The shortest ``AUSCULT_HTTP_TOKEN`` accepted (a guessable token is no protection).
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class HttpConfig:
    """The live page and REST API (``--http-port``): where they listen, the token every request
    must carry (``AUSCULT_HTTP_TOKEN``; a secret, never in ``repr`` or logs; required beyond
    loopback) and the largest upload ``POST /api/score`` takes."""

    port: int
    bind: str = "127.0.0.1"
    token: str = field(default="", repr=False)
    max_upload_bytes: int = 20 * 2**20


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ``::1``)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Config:
    """Everything the module runs with, loaded once."""

    source: str = "mic"
    speed: str = "realtime"
    mic_device: str | None = None
    sample_rate: int | None = None
    channels: int = 1
    channel: int | None = None
    no_audio_seconds: float = 5.0
    model: Path = DEFAULT_MODEL
    backend: str = "auto"
    settings: Settings = field(default_factory=Settings)
    calibrate_seconds: float = 0.0
    calibrate_percentile: float = 99.5
    learn_seconds: float = 0.0
    learn_alerts_per_day: float = 1.0
    relearn: bool = False
    feedback_alerts: int = 100
    local_out: Path = Path("auscult-out")
    window_log: Path | None = None
    self_test: bool = False
    log_level: str = "INFO"
    hub: HubConfig | None = None
    http: HttpConfig | None = None

    @property
    def state_dir(self) -> Path:
        """Where the module keeps its state: the spool under IoT Edge, else ``local_out``."""
        return Path(self.hub.spool_dir) if self.hub is not None else Path(self.local_out)


def _speed(text: str) -> str:
    from audioclassifier.sources import parse_speed

    try:
        parse_speed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _naming_env(convert: Any, name: str, value: str) -> Any:
    """``convert``, whose errors name the environment variable when the text came from it."""
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            if text == value:
                raise argparse.ArgumentTypeError(f"{exc} (from {name})") from None
            raise

    return parse


def _int_at_least(lo: int) -> Any:
    return Param(f"integer >= {lo}", int, None, "", lo=lo).parse


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The parser; defaults come from ``env`` (``AUSCULT_<OPTION>``)."""
    p = argparse.ArgumentParser(
        prog="python -m audioclassifier",
        description="Auscult edge module: listens to a machine (microphone or recordings), scores log-mel "
                    "windows with an ONNX model and raises alerts. Without an IoT Hub connection it runs in "
                    "local mode: alerts.jsonl, telemetry.jsonl and clips/ under --local-out. Every option "
                    f"can also be set as an environment variable {ENV_PREFIX}<OPTION> (e.g. {ENV_PREFIX}HOP_SECONDS).",
    )
    group: Any = p

    def add(*flags: str, dest: str, default: Any = None, help: str, **kw: Any) -> None:
        value = env.get(env_name(dest))
        if value is not None and value != "":
            default = value
            if kw.get("type") is not None:
                kw["type"] = _naming_env(kw["type"], env_name(dest), value)
            choices = kw.get("choices")
            if choices is not None:  # argparse checks the choices of typed values only
                try:
                    shown = kw["type"](value) if kw.get("type") is not None else value
                except argparse.ArgumentTypeError as exc:
                    p.error(f"{env_name(dest)}={value!r}: {exc}")
                if shown not in choices:
                    p.error(f"{env_name(dest)}={value!r}: choose from {', '.join(map(str, choices))}")
        group.add_argument(*flags, dest=dest, default=default, help=f"{help} [env {env_name(dest)}]", **kw)

    def add_param(param: Param, flag: str, *, default: Any = None) -> None:
        extra = {"choices": param.choices} if param.choices else {}
        accepted = "" if param.choices else f"; {param.accepted()}"
        shown = "" if default is None and param.default is None else f", default {param.default}"
        add(flag, dest=param.name, default=default, type=param.parse,
            help=f"{param.doc}{accepted}{shown}", metavar=None if param.choices else param.name.upper(), **extra)

    def add_flag(param: Param, *, group: Any = None, help: str | None = None) -> None:
        """A switch (``--relearn``), on by default when its variable says so (``AUSCULT_RELEARN=1``)."""
        try:
            default = param.parse(env.get(env_name(param.name), ""))
        except argparse.ArgumentTypeError as exc:
            p.error(f"{env_name(param.name)}: {exc}")
        (group or p).add_argument("--" + param.name.replace("_", "-"), dest=param.name, action="store_true",
                                  default=default, help=f"{help or param.doc} [env {env_name(param.name)}=1]")

    group = p.add_argument_group("audio source")
    add("--source", dest="source", default="mic", help="'mic', an audio file, or a folder of them (default mic)")
    add("--speed", dest="speed", default="realtime", type=_speed,
        help="file replay pace: realtime, max (as fast as possible) or a factor such as 10 (default realtime)")
    add("--mic-device", dest="mic_device", help="microphone by PortAudio index or (part of its) name")
    add("--sample-rate", dest="sample_rate", type=_int_at_least(1000),
        help="microphone capture rate in Hz (default: the model's; resampled to it if different)")
    add("--channels", dest="channels", type=_int_at_least(1), default=1, help="microphone channels to open (default 1)")
    add("--channel", dest="channel", type=_int_at_least(0),
        help="use this channel (0-based) of the microphone or file; default: mix all down")
    add("--no-audio-seconds", dest="no_audio_seconds", type=Param("seconds", float, 5.0, "", lo=0, lo_open=True).parse,
        default=5.0, help="seconds without callbacks or with only digital zeros before the microphone counts as dead "
                          "and is reopened (default 5)")

    group = p.add_argument_group("model and inference")
    add("--model", dest="model", default=str(DEFAULT_MODEL), help=f"ONNX model with an Auscult card (default {DEFAULT_MODEL})")
    add("--backend", dest="backend", default="auto", choices=("auto", "openvino", "onnxruntime"),
        help="inference runtime; auto = OpenVINO if it compiles the model, else onnxruntime (default auto)")
    add_param(SETTINGS["device"], "--device")
    add_param(SETTINGS["precision"], "--precision")

    group = p.add_argument_group("detection (the module twin can change these live)")
    for name in SETTINGS_OPTIONS:
        if name not in ("device", "precision"):
            add_param(SETTINGS[name], "--" + name.replace("_", "-"))
    for name in ("calibrate_seconds", "calibrate_percentile", "learn_seconds", "learn_alerts_per_day"):
        add_param(OPTIONS[name], "--" + name.replace("_", "-"), default=OPTIONS[name].default)
    add_flag(OPTIONS["relearn"])
    add_param(OPTIONS["feedback_alerts"], "--feedback-alerts", default=OPTIONS["feedback_alerts"].default)

    group = p.add_argument_group("IoT Hub")
    add_param(OPTIONS["twin_wait_seconds"], "--twin-wait-seconds", default=OPTIONS["twin_wait_seconds"].default)

    group = out = p.add_argument_group("output")
    add_flag(Param("self_test", bool, False, "check the model and front end, print a JSON report, exit 0 if all "
                   "is well"), group=out)
    add("--local-out", dest="local_out", default="auscult-out",
        help="local mode folder for alerts.jsonl, telemetry.jsonl, clips/ (default ./auscult-out)")
    add("--window-log", dest="window_log",
        help="also write one JSON line per window (offsets, level, score, threshold) to this file")
    add("--log-level", dest="log_level", default="INFO", type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="log level (default INFO)")

    group = p.add_argument_group("live page and REST API (the token: AUSCULT_HTTP_TOKEN, environment only)")
    for name in ("http_port", "http_bind", "http_max_upload_mb"):
        add_param(OPTIONS[name], "--" + name.replace("_", "-"), default=OPTIONS[name].default)
    return p


def hub_config(env: Mapping[str, str], *, twin_wait_seconds: float | None = None) -> HubConfig:
    """The IoT Hub side's configuration from ``env`` (the composition root and the tests build it),
    with the desired properties the last run kept. ``twin_wait_seconds`` (the command line's)
    wins over ``AUSCULT_TWIN_WAIT_SECONDS``."""
    def megabytes(name: str) -> int:
        param = OPTIONS[name]
        text = env.get(env_name(name))
        try:
            value = param.check(param.default) if not text else param.parse(text)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"{env_name(name)}={text!r}: {exc}") from None
        return int(value * 2**20)

    def number(name: str) -> float:
        param = OPTIONS[name]
        text = env.get(env_name(name))
        try:
            return float(param.default if not text else param.parse(text))
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"{env_name(name)}={text!r}: {exc}") from None

    reconnect_seconds = number("hub_reconnect_seconds")
    wait = number("twin_wait_seconds") if twin_wait_seconds is None else float(twin_wait_seconds)
    upload = UploadTarget(
        blob_connection_string=env.get("AUSCULT_BLOB_CONNECTION_STRING", ""),
        blob_container=env.get("AUSCULT_BLOB_CONTAINER") or UploadTarget.blob_container,
        container_sas_url=env.get("AUSCULT_BLOB_CONTAINER_SAS_URL", ""),
        device_connection_string=env.get("AUSCULT_DEVICE_CONNECTION_STRING", ""))
    spool_dir = Path(env.get("AUSCULT_SPOOL_DIR") or DEFAULT_SPOOL_DIR)
    return HubConfig(spool_dir=spool_dir,
                     spool_quota_bytes=megabytes("spool_quota_mb"), outbox_quota_bytes=megabytes("outbox_quota_mb"),
                     reconnect_seconds=reconnect_seconds, ca_file=env.get("AUSCULT_CA_FILE") or None,
                     upload=upload, twin_wait_seconds=wait, desired=load_desired(spool_dir / DESIRED_FILE))


def http_config(port: int, bind: str, max_upload_mb: float, env: Mapping[str, str]) -> HttpConfig | None:
    """The live page's configuration (None when ``port`` is 0): the token comes from the
    environment only (a command line shows in ``ps``); beyond loopback it is required."""
    if not port:
        return None
    token = env.get("AUSCULT_HTTP_TOKEN", "")
    if token and (len(token) < MIN_TOKEN_LENGTH or not token.isprintable() or token != token.strip()):
        raise ConfigError(f"AUSCULT_HTTP_TOKEN must be at least {MIN_TOKEN_LENGTH} printable characters without "
                          "surrounding spaces")
    if not token and not is_loopback(bind):
        raise ConfigError(f"--http-bind {bind}: serving beyond loopback requires a token in AUSCULT_HTTP_TOKEN "
                          f"(at least {MIN_TOKEN_LENGTH} characters; every request must then carry it)")
    return HttpConfig(port=int(port), bind=bind, token=token, max_upload_bytes=int(max_upload_mb * 2**20))


def load_config(argv: list[str] | None, env: Mapping[str, str]) -> Config:
    """Command line and environment → :class:`Config`. A bad option exits 2 (argparse's way);
    a bad hub variable or setting raises :class:`ConfigError`."""
    args = build_parser(env).parse_args(argv)
    given = {k: getattr(args, k) for k in SETTINGS_OPTIONS if getattr(args, k, None) is not None}
    try:
        settings = Settings.from_mapping(given)
    except SettingsError as exc:
        raise ConfigError(f"--{exc.field.replace('_', '-')}: {exc.reason}") from None
    if float(args.calibrate_seconds) and (float(args.learn_seconds) or args.relearn):
        raise ConfigError("--calibrate-seconds and --learn-seconds/--relearn exclude each other: on-site learning "
                          "fits its own threshold (calibrate later with the calibrate method if needed)")
    return Config(
        source=args.source, speed=args.speed, mic_device=args.mic_device, sample_rate=args.sample_rate,
        channels=args.channels, channel=args.channel, no_audio_seconds=float(args.no_audio_seconds),
        model=Path(args.model), backend=args.backend, settings=settings,
        calibrate_seconds=float(args.calibrate_seconds), calibrate_percentile=float(args.calibrate_percentile),
        learn_seconds=float(args.learn_seconds), learn_alerts_per_day=float(args.learn_alerts_per_day),
        relearn=bool(args.relearn),
        feedback_alerts=int(args.feedback_alerts),
        local_out=Path(args.local_out), window_log=Path(args.window_log) if args.window_log else None,
        self_test=bool(args.self_test), log_level=args.log_level,
        hub=hub_config(env, twin_wait_seconds=float(args.twin_wait_seconds)) if hub_configured(env) else None,
        http=http_config(args.http_port, args.http_bind, float(args.http_max_upload_mb), env),
    )
