"""Pytest fixtures for the hub tests: TLS material, Mosquitto, the hub responder, Azurite, file upload.

Loaded by tests/conftest.py (``pytest_plugins``). The broker, responder and Azurite are started
once per session; function fixtures put them back to a known state (running, twin reset) so a
test that stops one of them cannot break the next. Without mosquitto or azurite installed the
tests that need them skip locally and fail in CI (``CI`` set): .ci/run installs both.
"""

from __future__ import annotations

import base64
import os
import uuid

import pytest

from .azurite import Azurite, azurite_path
from .broker import Mosquitto, mosquitto_path
from .certs import TlsFiles, make_tls
from .fileupload import FileUploadHub
from .procs import port_open
from .responder import HubResponder


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI (.ci/run installs it)")
    pytest.skip(f"{what} not installed (run .ci/run once to install the test harness)")


@pytest.fixture(scope="session")
def tls(tmp_path_factory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def _broker_session(tmp_path_factory, tls):
    if mosquitto_path() is None:
        _missing("mosquitto")
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"), tls)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def _hub_session(_broker_session, tls):
    hub = HubResponder(tls, _broker_session.internal_port)
    hub.start()
    _broker_session.after_stop = hub.mark_down
    _broker_session.before_open = hub.wait_resubscribed  # modules get in only after the hub is back
    yield hub
    _broker_session.before_open = _broker_session.after_stop = None
    hub.stop()


@pytest.fixture()
def broker(_broker_session) -> Mosquitto:
    """Mosquitto over TLS on 127.0.0.1:8883 (running at the start of each test)."""
    if not _broker_session.running:
        _broker_session.start()
    return _broker_session


@pytest.fixture()
def hub(broker, _hub_session) -> HubResponder:
    """The IoT Hub stand-in, connected, with an empty twin and no recorded messages."""
    _hub_session.wait_connected()
    _hub_session.reset()
    return _hub_session


@pytest.fixture(scope="session")
def _azurite_session(tmp_path_factory, tls):
    if azurite_path() is None:
        _missing("azurite")
    azurite = Azurite(tmp_path_factory.mktemp("azurite"), tls)
    azurite.start()
    yield azurite
    azurite.stop()


@pytest.fixture()
def azurite(_azurite_session) -> Azurite:
    """Azurite blob service over HTTPS (running at the start of each test)."""
    if _azurite_session.proc is None:
        _azurite_session.start()
    return _azurite_session


@pytest.fixture(scope="session")
def file_upload_hub(tls, _azurite_session):
    """The IoT Hub file-upload endpoints on 127.0.0.1:443, issuing SAS URIs into Azurite."""
    if os.geteuid() != 0:
        pytest.skip("the IoT Hub file-upload stand-in must bind port 443 (run as root)")
    if port_open(443):
        pytest.skip("port 443 is busy")
    server = FileUploadHub(tls, _azurite_session)
    server.start()
    yield server
    server.stop()


def fake_key() -> str:
    """A random symmetric key in the shape IoT Hub issues (never a real credential)."""
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture()
def edge_env(tls, tmp_path) -> dict[str, str]:
    """Environment for a module under the SDK's development fallback, pointing at the broker.

    A fresh device id per test: MQTT sessions are per client id, and a clean slate keeps tests apart.
    """
    device = f"dev-{uuid.uuid4().hex[:8]}"
    return {
        "EdgeHubConnectionString": (f"HostName=testhub.azure-devices.net;DeviceId={device};ModuleId=audioclassifier;"
                                    f"SharedAccessKey={fake_key()};GatewayHostName=localhost"),
        "EdgeModuleCACertificateFile": str(tls.ca),
        "AUSCULT_HUB_RECONNECT_SECONDS": "1",
        "AUSCULT_SPOOL_DIR": str(tmp_path / "spool"),
        "AUSCULT_CA_FILE": str(tls.ca),
    }


@pytest.fixture()
def device_connection_string() -> str:
    return f"HostName=localhost;DeviceId=uploader-{uuid.uuid4().hex[:6]};SharedAccessKey={fake_key()}"

