"""Model over the air: download (file:// and https://), hash and card checks, nothing half-done."""

from __future__ import annotations

import hashlib
import http.server
import ssl
import threading
from pathlib import Path

import onnx
import pytest

from audioclassifier.hub.ota import OtaError, fetch_model
from audioclassifier.settings import ModelRef
from harness.models import tiny_graph, tiny_model


def ref(path: Path, sha: str, version: str = "2") -> ModelRef:
    return ModelRef(url=path.as_uri(), sha256=sha, version=version)


def leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


def test_file_url_downloads_verifies_and_reuses(tmp_path: Path) -> None:
    src, sha = tiny_model(tmp_path / "new.onnx", version="7")
    models = tmp_path / "models"
    path, card = fetch_model(ref(src, sha), models)
    assert path == models / f"{sha}.onnx" and path.read_bytes() == src.read_bytes()
    assert card.version == "7" and card.kind == "anomaly"
    src.unlink()  # a verified copy is reused: no second download
    again, _ = fetch_model(ref(src, sha), models)
    assert again == path and leftovers(models) == [f"{sha}.onnx"]


def test_hash_mismatch_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    src, sha = tiny_model(tmp_path / "new.onnx")
    wrong = ("0" if sha[0] != "0" else "1") + sha[1:]
    with pytest.raises(OtaError) as info:
        fetch_model(ref(src, wrong), tmp_path / "models")
    assert info.value.stage == "verify" and "sha256 mismatch" in str(info.value)
    assert leftovers(tmp_path / "models") == []


@pytest.mark.parametrize("kind", ["garbage", "no-card"])
def test_a_file_that_is_not_a_model_with_a_card_is_refused(tmp_path: Path, kind: str) -> None:
    src = tmp_path / "bad.onnx"
    if kind == "garbage":
        src.write_bytes(b"not an onnx model at all" * 10)
    else:
        onnx.save_model(tiny_graph(), str(src))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    with pytest.raises(OtaError) as info:
        fetch_model(ref(src, sha), tmp_path / "models")
    assert info.value.stage == "card"
    assert ("no Auscult model card" in info.value.reason) == (kind == "no-card")
    assert leftovers(tmp_path / "models") == []


def test_missing_file_and_plain_http_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OtaError, match="download"):
        fetch_model(ModelRef(url=(tmp_path / "none.onnx").as_uri(), sha256="a" * 64, version="1"), tmp_path / "m")
    with pytest.raises(OtaError, match="only https"):
        fetch_model(ModelRef(url="http://127.0.0.1/x.onnx", sha256="a" * 64, version="1"), tmp_path / "m")


def test_https_download_with_a_private_ca(tmp_path: Path, tls) -> None:
    served = tmp_path / "www"
    served.mkdir()
    src, sha = tiny_model(served / "model.onnx", version="9")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls.cert, tls.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        url = f"https://localhost:{port}/model.onnx"
        path, card = fetch_model(ModelRef(url=url, sha256=sha, version="9"), tmp_path / "m", ca_file=str(tls.ca))
        assert card.version == "9" and path.read_bytes() == src.read_bytes()
        with pytest.raises(OtaError, match="404"):
            fetch_model(ModelRef(url=f"https://localhost:{port}/nope.onnx", sha256="b" * 64, version="1"),
                        tmp_path / "m", ca_file=str(tls.ca))
        # without the private CA the server is not trusted
        with pytest.raises(OtaError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch_model(ModelRef(url=url, sha256="c" * 64, version="1"), tmp_path / "m2")
    finally:
        server.shutdown()
        server.server_close()
