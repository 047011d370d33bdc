"""The test suite's root: its layout, markers and shared fixtures.

    unit/          one part in-process (pure functions, small classes, training on tiny data)
    integration/   the real module process, the real SDKs against the loopback harness (Mosquitto
                   over TLS, the hub responder, Azurite, PulseAudio), HTTPS servers, fresh venvs
    contract/      what others rely on: the deployment manifest, the docs, the wheel, the image,
                   the ONNX export contract, the notifier's payloads, one consumer per setting
    harness/       the one place for helpers: models (make_model), audio, trees, the module as a
                   process (run_module, ModuleProcess), waiting (wait_until), the stand-ins

Markers, set from the fixtures a test uses (``pytest -m "not broker"`` runs without Mosquitto):
``broker`` (Mosquitto and the hub responder), ``azurite`` (blob storage), ``pulseaudio`` (the
microphone stand-in); ``slow`` and ``image`` are set by the tests themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.paths import SHARED_DATA

# Loopback stand-ins for the Azure side (Mosquitto, hub responder, Azurite, file upload).
pytest_plugins = ["harness.fixtures", "harness.audio"]

_SERVICE_MARKERS = {"broker": {"hub", "broker", "edge_env", "_broker_session"},
                    "azurite": {"azurite", "file_upload_hub", "_azurite_session"},
                    "pulseaudio": {"pulse_mic"}}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in _SERVICE_MARKERS.items():
            if used & fixtures:
                item.add_marker(marker)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, the real recordings (present in CI); tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_DATA} (set AUSCULT_SHARED_DATA)")
    return SHARED_DATA
