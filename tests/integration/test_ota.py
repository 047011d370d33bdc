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
from harness.procs import wait_until


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


class Trickle:
    """A local HTTPS server that sends a model one byte every ``gap`` seconds (a slow or hostile
    OTA server), or at full speed for a second path."""

    def __init__(self, tls, files: dict[str, bytes], gap: float) -> None:  # type: ignore[no-untyped-def]
        gap_s = gap

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path.startswith("/slow"):
                    for i in range(len(body)):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        if stop.wait(gap_s):
                            return
                else:
                    self.wfile.write(body)

            def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
                pass

        stop = threading.Event()
        self.stop = stop
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls.cert, tls.key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"https://localhost:{self.server.server_address[1]}"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_trickling_server_is_abandoned_by_the_overall_deadline(tmp_path: Path, tls) -> None:
    """A server sending 1 byte every 5 s kept the download alive for 160 s and more (the 60 s
    timeout is per read). Deadlines here are scaled down; the rule is the same."""
    src, sha = tiny_model(tmp_path / "m.onnx", version="3")
    server = Trickle(tls, {"slow/m.onnx": src.read_bytes()}, gap=0.2)
    try:
        ref_ = ModelRef(url=f"{server.base}/slow/m.onnx", sha256=sha, version="3")
        with pytest.raises(OtaError, match="too slow"):
            fetch_model(ref_, tmp_path / "models", ca_file=str(tls.ca), deadline=2.0, grace=60)
        with pytest.raises(OtaError, match="bytes/s"):
            fetch_model(ref_, tmp_path / "models", ca_file=str(tls.ca), grace=1.0, min_rate=100)
        assert leftovers(tmp_path / "models") == []  # no .part left behind
    finally:
        server.close()


def test_a_newer_request_supersedes_a_running_download_and_old_models_are_pruned(tmp_path: Path, tls) -> None:
    from audioclassifier.hub.ota import ModelUpdater

    slow_src, slow_sha = tiny_model(tmp_path / "slow.onnx", version="slow")
    fast = [tiny_model(tmp_path / f"f{i}.onnx", version=f"v{i}") for i in range(3)]
    files = {"slow/m.onnx": slow_src.read_bytes(), **{f"f{i}.onnx": p.read_bytes() for i, (p, _) in enumerate(fast)}}
    server = Trickle(tls, files, gap=0.5)
    models = tmp_path / "models"
    models.mkdir()
    (models / ".download.abc.part").write_bytes(b"half")  # a download a crash interrupted
    swapped: list[Path] = []
    reports: list[dict] = []
    done = threading.Event()
    updater = ModelUpdater(models, swap=lambda p: swapped.append(p) or {}, report=reports.append,
                           on_done=lambda ref_: done.set(), ca_file=str(tls.ca))
    assert leftovers(models) == []  # the interrupted download is gone at start
    try:
        updater.request(ModelRef(url=f"{server.base}/slow/m.onnx", sha256=slow_sha, version="slow"))
        assert wait_until(lambda: any(r.get("model", {}).get("state") == "downloading" for r in reports), 10)
        updater.request(ModelRef(url=f"{server.base}/f0.onnx", sha256=fast[0][1], version="v0"))
        assert done.wait(20), reports
        assert [p.stem for p in swapped] == [fast[0][1]]  # the slow one never got in
        assert any("superseded" in str(r.get("model", {}).get("error")) for r in reports)
        for i in (1, 2):
            done.clear()
            updater.request(ModelRef(url=f"{server.base}/f{i}.onnx", sha256=fast[i][1], version=f"v{i}"))
            assert done.wait(20)
        # Only the model in use and the one before it stay.
        assert leftovers(models) == sorted([f"{fast[1][1]}.onnx", f"{fast[2][1]}.onnx"])
    finally:
        server.close()

