"""Inference backends: OpenVINO and onnxruntime behind one interface, with bounded threads.

:func:`load_model` loads an Auscult ONNX model (model card included), compiles it, and checks it
on a window of the card's shape before it is used: a model that loads is a model that scores.
``backend="auto"`` decides before importing anything (:mod:`audioclassifier.devices`): OpenVINO
when an Intel GPU or NPU is present or a device is asked for, onnxruntime on a CPU-only machine;
when the engine it chose cannot take the model, the other one if installed; it says why in
:attr:`LoadedModel.note`. Only the chosen runtime is imported, and one process runs one runtime
with one inference thread (two runtimes in one process fight over the cores).

Precision is pinned, never left to the device: OpenVINO's CPU plugin defaults to bf16 on Intel
CPUs with AMX, and GPUs default to f16, which moves scores away from the card's threshold (fitted
in f32) by up to 5e-2. Every device is compiled with ``INFERENCE_PRECISION_HINT=f32`` unless the
caller opts into lower precision (``precision="bf16"``, ``"f16"``, or ``"device"`` for the
device's own default); :attr:`Backend.precision` says what the compiled model runs at.

Neither runtime phones home: OpenVINO's Python package sends a usage event at import when its
telemetry package is importable and no opt-out file exists, so :func:`import_openvino` blocks that
package (OpenVINO then uses its built-in no-op stub); onnxruntime (1.32 on Linux) writes a device
id under ``~/.cache/Microsoft`` and uploads events unless ``ORT_DISABLE_TELEMETRY`` is set before it
loads, which :func:`import_onnxruntime` does.

The card comes from the runtime's own view of the ONNX metadata: onnxruntime's
``custom_metadata_map``, or OpenVINO's ``rt_info["framework"]`` (its ONNX reader keeps
``metadata_props`` there), so OpenVINO runs never load onnxruntime.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from audioclassifier.card import CARD_KEY, CardError, ModelCard, card_from_metadata
from audioclassifier.devices import choose_engine, find_accelerators, installed_engines
from audioclassifier.errors import FatalError

__all__ = ["BACKENDS", "PRECISIONS", "Backend", "LoadedModel", "ModelError", "import_onnxruntime", "import_openvino",
           "load_model", "openvino_core"]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "openvino", "onnxruntime")
#: Inference precision: f32 (the default: the card's threshold was fitted in f32), a lower one a
#: user opts into, or "device" (whatever the device defaults to: bf16 on AMX CPUs, f16 on GPUs).
PRECISIONS = ("f32", "bf16", "f16", "device")

class ModelError(FatalError):
    """A model that cannot be used: ``path`` names it and ``reason`` says why (the old one stays)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"model {self.path}: {reason}")

class Backend(Protocol):
    """A compiled model: raw output of a ``(batch, n_mels, frames)`` float32 input."""

    name: str  # "openvino" | "onnxruntime"
    device: str  # where it runs ("CPU", or what OpenVINO's AUTO picked)
    precision: str  # what the compiled model computes in ("f32", "bf16", "f16", ...)

    def select_output(self, name: str, *more: str) -> None: ...

    def infer(self, x: np.ndarray) -> np.ndarray: ...

    def infer_all(self, x: np.ndarray) -> list[np.ndarray]: ...

    def close(self) -> None: ...

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # OpenVINO prefixes every message with "Exception from src/...": the useful part comes last.
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check "))] or lines
    return useful[-1][:300] if "Exception from" in text else useful[0][:300]

class OnnxRuntimeBackend:
    """onnxruntime on the CPU, one intra-op and one inter-op thread, sequential execution."""

    name = "onnxruntime"
    device = "CPU"
    precision = "f32"

    def __init__(self, path: Path) -> None:
        try:
            ort = import_onnxruntime()
        except ImportError as exc:
            raise ModelError(path, f"onnxruntime is not installed ({exc})") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several private exception types
            raise ModelError(path, f"not a loadable ONNX model ({_first_line(exc)})") from exc
        self.metadata = dict(self._sess.get_modelmeta().custom_metadata_map)
        self.inputs = [(i.name, i.shape) for i in self._sess.get_inputs()]
        self.outputs = [o.name for o in self._sess.get_outputs()]
        self._outs: list[str] = [self.outputs[0]]

    def select_output(self, name: str, *more: str) -> None:
        """The outputs :meth:`infer_all` returns (``name`` first, the one :meth:`infer` returns)."""
        self._outs = [name, *more]

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.infer_all(x)[0]

    def infer_all(self, x: np.ndarray) -> list[np.ndarray]:
        """The selected outputs of one inference call."""
        return list(self._sess.run(self._outs, {self.inputs[0][0]: x}))

    def close(self) -> None:
        self._sess = None

def import_openvino() -> Any:
    """``import openvino`` without its usage telemetry (see the module docstring)."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]  # ImportError -> stub
    import openvino as ov

    return ov

def import_onnxruntime() -> Any:
    """``import onnxruntime`` with its telemetry off (see the module docstring)."""
    if "onnxruntime" not in sys.modules:
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # read by the native library as it loads
    import onnxruntime as ort

    ort.disable_telemetry_events()
    return ort


def _precision_name(value: Any) -> str:
    """OpenVINO's element type (``<Type: 'float32'>``) as the short name used in settings."""
    text = str(getattr(value, "get_type_name", lambda: value)()).strip().lower()
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(text, text)

_CORE_LOCK = threading.Lock()
_CORE: Any = None
_DEVICE_PRECISION: dict[str, Any] = {}  # each device's own INFERENCE_PRECISION_HINT, before we set any


def _shared_core(ov: Any) -> Any:
    """The process's one ``ov.Core``: made on first use, never released. Call with ``_CORE_LOCK`` held
    (its properties are set for each model just before that model compiles).

    Why one: OpenVINO's CPU plugin points the alternate signal stack of the thread that creates it
    at memory it frees with the plugin. Once a Core was released, the next signal that thread took
    (SIGTERM from ``docker stop``) was a segfault, not a clean stop: seen every time after a model
    was loaded on another thread (a model update) and the first one dropped."""
    global _CORE
    if _CORE is None:
        core = ov.Core()
        for dev in core.available_devices:
            try:
                _DEVICE_PRECISION[dev] = core.get_property(dev, "INFERENCE_PRECISION_HINT")
            except Exception:  # noqa: BLE001 - a device without the property
                pass
        _CORE = core
    return _CORE


def openvino_core() -> Any:
    """The process's one ``ov.Core`` (see :func:`_shared_core`), for reading device properties;
    code that compiles a model goes through :class:`OpenVinoBackend`."""
    with _CORE_LOCK:
        return _shared_core(import_openvino())


def _configure_devices(core: Any, precision: str) -> None:
    """Per-device properties, set on the core so that AUTO's choice gets them too (``device``: the
    device's own precision, put back if an earlier model on this core set another)."""
    for dev in core.available_devices:
        props: dict[str, Any] = {}
        if dev.startswith("CPU"):
            props.update({"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"})
        if precision != "device":
            props["INFERENCE_PRECISION_HINT"] = precision
        elif dev in _DEVICE_PRECISION:
            props["INFERENCE_PRECISION_HINT"] = _DEVICE_PRECISION[dev]
        try:
            supported = set(core.get_property(dev, "SUPPORTED_PROPERTIES"))
            props = {k: v for k, v in props.items() if k in supported}
            if props:
                core.set_property(dev, props)
        except Exception as exc:  # noqa: BLE001 - a plugin that refuses a property keeps its default
            log.warning("OpenVINO %s: properties %s not set (%s)", dev, sorted(props), _first_line(exc))

#: The compiled-model cache keeps at most this many bytes (the oldest blobs go first).
MODEL_CACHE_BYTES = 64 * 2**20


def _use_cache(core: Any, cache_dir: Path) -> Path | None:
    """Compile through OpenVINO's model cache in ``cache_dir`` (a later start, or a GPU, skips the
    compilation: ~0.26 s to 0.04 s for the shipped model on a CPU), pruned to :data:`MODEL_CACHE_BYTES`.
    None, logged, when the folder cannot be used: the model still compiles, without a cache."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        files = sorted((f for f in cache_dir.iterdir() if f.is_file()), key=lambda f: f.stat().st_mtime)
        total = sum(f.stat().st_size for f in files)
        while files and total > MODEL_CACHE_BYTES:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink()
        core.set_property({"CACHE_DIR": str(cache_dir)})
    except Exception as exc:  # noqa: BLE001 - a cache is an optimisation, never a reason not to run
        log.warning("OpenVINO model cache %s not used (%s): the model compiles at every start", cache_dir,
                    _first_line(exc))
        return None
    return cache_dir


class OpenVinoBackend:
    """OpenVINO on ``device`` (AUTO, CPU, GPU, NPU) at ``precision``; the CPU plugin on one thread."""

    name = "openvino"

    def __init__(self, path: Path, device: str = "AUTO", precision: str = "f32", *,
                 cache_dir: Path | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        try:
            ov = import_openvino()
        except ImportError as exc:
            raise ModelError(path, f"OpenVINO is not installed ({exc})") from exc
        with _CORE_LOCK:  # the core's properties are this model's until it has compiled
            core = _shared_core(ov)
            _configure_devices(core, precision)
            self.cache_dir = _use_cache(core, cache_dir) if cache_dir is not None else None
            if self.cache_dir is None:
                core.set_property({"CACHE_DIR": ""})  # no cache for this one, whatever the last model had
            try:
                model = core.read_model(str(path))
            except Exception as exc:
                raise ModelError(path, f"OpenVINO cannot read it ({_first_line(exc)})") from exc
            self.metadata: dict[str, str] = {}
            if model.has_rt_info(["framework", CARD_KEY]):
                self.metadata[CARD_KEY] = model.get_rt_info(["framework", CARD_KEY]).astype(str)
            self.inputs = [(i.get_any_name(), list(i.get_partial_shape())) for i in model.inputs]
            self.outputs = [o.get_any_name() for o in model.outputs]
            try:
                self._compiled = core.compile_model(model, device, {"PERFORMANCE_HINT": "LATENCY"})
            except Exception as exc:
                raise ModelError(path, f"OpenVINO cannot compile it for {device} ({_first_line(exc)})") from exc
            try:
                devices = [str(d) for d in self._compiled.get_property("EXECUTION_DEVICES")]
            except Exception:  # noqa: BLE001
                devices = [device]
            self.device = ",".join(devices) if device == "AUTO" else device
            self.requested_device = device
            self.requested_precision = precision
            self.precision = self._compiled_precision(core, devices)
        self._request = self._compiled.create_infer_request()
        self._out_indices = [0]

    def _compiled_precision(self, core: Any, devices: list[str]) -> str:
        """What the compiled model computes in: its own property, or (AUTO) its device's."""
        try:
            return _precision_name(self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        except Exception:  # noqa: BLE001 - AUTO does not expose it: ask the device it picked
            pass
        names = set()
        for dev in devices:
            try:
                names.add(_precision_name(core.get_property(dev, "INFERENCE_PRECISION_HINT")))
            except Exception:  # noqa: BLE001 - a device without the property
                names.add("unknown")
        return ",".join(sorted(names))

    def select_output(self, name: str, *more: str) -> None:
        """The outputs :meth:`infer_all` returns (``name`` first, the one :meth:`infer` returns)."""
        self._out_indices = [self.outputs.index(n) for n in (name, *more)]

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.infer_all(x)[0]

    def infer_all(self, x: np.ndarray) -> list[np.ndarray]:
        """The selected outputs of one inference call."""
        result = self._request.infer({0: x})
        return [np.asarray(result[self._compiled.outputs[i]]) for i in self._out_indices]

    def close(self) -> None:
        self._request = None
        self._compiled = None

@dataclass
class LoadedModel:
    """A compiled model and its card: :meth:`score` turns windows into anomaly scores and labels;
    :meth:`analyse` also gives the window's embedding when the card supports on-site learning."""

    path: Path
    card: ModelCard
    backend: Any  # Backend
    note: str = ""  # why auto chose what it chose
    output: str = ""
    embedding: str | None = None  # the embedding output's name (the card's learning block), or None
    _lock: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        import threading

        self._lock = threading.Lock()  # one infer request: the self-test may score from another thread

    @property
    def version(self) -> str:
        return self.card.version

    def raw(self, batch: np.ndarray) -> np.ndarray:
        """The model's output for a ``(batch, n_mels, frames)`` float32 array."""
        with self._lock:
            return np.asarray(self.backend.infer(np.ascontiguousarray(batch, dtype=np.float32)))

    def score_batch(self, batch: np.ndarray) -> tuple[list[float], list[str]]:
        """:meth:`score` for each window of a ``(batch, n_mels, frames)`` array.

        One window per inference, as the runtime scores them: some converters mishandle a
        dynamic batch dimension (OpenVINO 2026.4 reduces ONNX ReduceLogSumExp over the batch).
        """
        results = [self.decide(self.raw(w[None])) for w in batch]
        return [r[0] for r in results], [r[1] for r in results]

    def score(self, logmel: np.ndarray) -> tuple[float, str]:
        """Anomaly score (higher = more anomalous) and label of one ``(n_mels, frames)`` window."""
        return self.decide(self.raw(logmel[None]))

    def analyse(self, logmel: np.ndarray) -> tuple[float, str, np.ndarray | None]:
        """:meth:`score` and the window's embedding ``(D,)`` float32 (None when the model has none),
        from one inference call."""
        if self.embedding is None:
            return (*self.score(logmel), None)
        with self._lock:
            out, emb = self.backend.infer_all(np.ascontiguousarray(logmel[None], dtype=np.float32))
        return (*self.decide(np.asarray(out)), np.asarray(emb, dtype=np.float32).reshape(-1))

    def decide(self, out: np.ndarray) -> tuple[float, str]:
        """Score and label of one window from the model's output (:meth:`raw` of one window)."""
        card = self.card
        if card.kind == "anomaly":
            return float(out.reshape(-1)[0]), "anomaly"
        probs = out.reshape(-1)
        return float(1.0 - probs[card.normal_index]), card.labels[int(np.argmax(probs))]

    def summary(self) -> dict[str, Any]:
        """Model, backend and device for status and logs."""
        return {"path": str(self.path), "backend": self.backend.name, "device": self.backend.device,
                "precision": self.backend.precision, "note": self.note, "card": self.card.summary()}

    def close(self) -> None:
        self.backend.close()

def _check(path: Path, backend: Any) -> tuple[ModelCard, str, str | None]:
    """The card, the outputs to read (score or probabilities; the embedding, if the card has one),
    and a trial run on a window of the card's shape."""
    try:
        card = card_from_metadata(backend.metadata, source=str(path))
    except CardError as exc:
        raise ModelError(path, exc.reason) from exc
    if len(backend.inputs) != 1:
        raise ModelError(path, f"expected one input (logmel), the model has {len(backend.inputs)}")
    name, shape = backend.inputs[0]
    if len(shape) != 3:
        raise ModelError(path, f"input {name!r} must have rank 3 (batch, n_mels, frames), has shape {shape}")
    want = "score" if card.kind == "anomaly" else "probs"
    output = want if want in backend.outputs else backend.outputs[0]
    embedding = _check_embedding(path, backend, card)
    backend.select_output(output, *([embedding] if embedding else []))
    x = np.zeros((1, card.features.n_mels, card.window_frames), dtype=np.float32) - 60.0
    try:
        out = np.asarray(backend.infer(x))
    except Exception as exc:
        raise ModelError(path, f"does not score a ({card.features.n_mels}, {card.window_frames}) log-mel window "
                               f"as its card describes ({_first_line(exc)})") from exc
    n = 1 if card.kind == "anomaly" else len(card.labels)
    if out.size != n:
        kind = "one score" if n == 1 else f"{n} probabilities ({', '.join(card.labels)})"
        raise ModelError(path, f"output {output!r} has shape {list(out.shape)} for one window; "
                               f"a {card.kind} model gives {kind} per window")
    if not np.isfinite(out).all():
        raise ModelError(path, "scores a plain window as NaN or infinity")
    try:  # a diagnosis for whoever exported the model; the runtime scores one window at a time
        pair = np.asarray(backend.infer(np.concatenate([x, x + 30.0])))
        batch_ok = pair.size == 2 * n and np.allclose(pair.reshape(2, n)[0], out.reshape(n), atol=1e-4)
    except Exception:  # noqa: BLE001
        batch_ok = False
    if not batch_ok:
        log.warning("model %s does not score a batch of windows correctly on %s (one window at a time is fine)",
                    path, backend.name)
    return card, output, embedding


def _check_embedding(path: Path, backend: Any, card: ModelCard) -> str | None:
    """The embedding output a card's learning block names (checked: ``(1, dim)`` for one window)."""
    block = card.learning
    if block is None:
        return None
    name, dim = str(block["embedding"]), int(block["dim"])
    if name not in backend.outputs:
        raise ModelError(path, f"the card's learning block names output {name!r}, the model has "
                               f"{', '.join(backend.outputs)}")
    backend.select_output(name)
    x = np.zeros((1, card.features.n_mels, card.window_frames), dtype=np.float32) - 60.0
    try:
        out = np.asarray(backend.infer(x))
    except Exception as exc:
        raise ModelError(path, f"output {name!r} fails on one window ({_first_line(exc)})") from exc
    if out.size != dim or not np.isfinite(out).all():
        raise ModelError(path, f"output {name!r} gives shape {list(out.shape)} for one window, "
                               f"the card's learning block says {dim} finite values")
    return name

def load_model(path: str | os.PathLike[str], *, backend: str = "auto", device: str = "AUTO",
               precision: str = "f32", cache_dir: Path | None = None) -> LoadedModel:
    """Load, compile and check a model; raises :class:`ModelError` with the reason.

    ``precision`` applies to OpenVINO (onnxruntime's CPU provider always computes in f32), and so
    does ``cache_dir``: OpenVINO's compiled-model cache (see :func:`_use_cache`).
    """
    p = Path(path)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if not p.exists():
        raise ModelError(p, "model file not found")
    if not p.is_file():
        raise ModelError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise ModelError(p, "empty file (0 bytes)")
    if backend != "auto":
        return _load_with(backend, p, device, precision, note="", cache_dir=cache_dir)
    choice = choose_engine(device=device, accelerators=find_accelerators(), installed=installed_engines())
    try:
        return _load_with(choice.engine, p, device, precision, note=choice.why, cache_dir=cache_dir)
    except ModelError as exc:
        other = "onnxruntime" if choice.engine == "openvino" else "openvino"
        if isinstance(exc.__cause__, CardError) or other not in installed_engines():
            raise  # a card problem is the model's, whatever the runtime
        note = f"{choice.why}; it cannot take this model ({exc.reason}): {other}"
        log.warning("%s", note)
        return _load_with(other, p, device, precision, note=note, cache_dir=cache_dir)


def _load_with(engine: str, path: Path, device: str, precision: str, *, note: str,
               cache_dir: Path | None = None) -> LoadedModel:
    be: Any = (OpenVinoBackend(path, device, precision, cache_dir=cache_dir) if engine == "openvino"
               else OnnxRuntimeBackend(path))
    try:
        card, output, embedding = _check(path, be)
    except BaseException:
        be.close()
        raise
    return LoadedModel(path, card, be, note=note, output=output, embedding=embedding)
