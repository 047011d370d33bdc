"""Clip spool and uploads against Azurite and the IoT Hub file-upload stand-in (real SDKs)."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from audioclassifier.audio_io import write_wav
from audioclassifier.backoff import Backoff
from audioclassifier.config import hub_config
from audioclassifier.hub.redact import find_secrets
from audioclassifier.hub.spool import Spool
from audioclassifier.hub.uploader import BlobTarget, FileUploadTarget, Uploader, make_target
from harness.azurite import ACCOUNT, ACCOUNT_KEY
from harness.fileupload import CONTAINER as FILE_UPLOAD_CONTAINER
from harness.procs import wait_until


def target_from_environment(env: dict[str, str]):  # type: ignore[no-untyped-def]
    """The upload target the module builds from these variables (config → target)."""
    config = hub_config(env)
    return make_target(config.upload, ca_file=config.ca_file)


def spool_clip(spool: Spool, name: str, seed: int) -> bytes:
    """Write a real WAV into the spool the way the runtime does (audio_io.write_wav)."""
    y = np.random.default_rng(seed).standard_normal(8000).astype(np.float32) * 0.1
    path = write_wav(spool.root / name, y, sample_rate=16000)
    return path.read_bytes()


def assert_no_secrets(text: str) -> None:
    assert find_secrets(text) == [], "a secret leaked into the logs"


def test_spool_skips_partial_files_and_quota_drops_oldest(tmp_path: Path, caplog) -> None:
    spool = Spool(tmp_path / "clips", quota_bytes=40_000)
    (spool.root / "m" / "d").mkdir(parents=True)
    (spool.root / "m" / "d" / ".x.wav.abc.part").write_bytes(b"half")
    a = spool.put("m/d/000001-a.wav", b"a" * 15_000)
    os.utime(a.path, (1, 1))
    b = spool.put("m/d/000002-b.wav", b"b" * 15_000)
    os.utime(b.path, (2, 2))
    assert [c.name for c in spool.pending()] == ["m/d/000001-a.wav", "m/d/000002-b.wav"]
    with caplog.at_level(logging.WARNING):
        spool.put("m/d/000003-c.wav", b"c" * 15_000)
    assert [c.name for c in spool.pending()] == ["m/d/000002-b.wav", "m/d/000003-c.wav"]
    assert spool.dropped == 1 and "dropped 1 oldest clip" in caplog.text and "000001-a.wav" in caplog.text


def test_blob_upload_is_byte_identical_and_deletes_only_after_success(tmp_path: Path, azurite, tls, caplog) -> None:
    spool = Spool(tmp_path / "clips")
    data = spool_clip(spool, "pump-1/2026-01-02/030405-bearing.wav", 1)
    target = target_from_environment({"AUSCULT_BLOB_CONNECTION_STRING": azurite.connection_string,
                                      "AUSCULT_BLOB_CONTAINER": "clips-a", "AUSCULT_CA_FILE": str(tls.ca)})
    assert isinstance(target, BlobTarget)
    results = []
    up = Uploader(spool, target, on_result=results.append)
    with caplog.at_level(logging.DEBUG):
        assert up.upload_pending()
    assert azurite.blobs("clips-a") == {"pump-1/2026-01-02/030405-bearing.wav": data}
    assert spool.pending() == [] and not (spool.root / "pump-1").exists()
    assert results[-1]["ok"] and results[-1]["clip"] == "pump-1/2026-01-02/030405-bearing.wav"
    assert_no_secrets(caplog.text)


def test_container_sas_url_target(tmp_path: Path, azurite, tls) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    azurite.container("clips-sas").create_container()
    sas = generate_container_sas(ACCOUNT, "clips-sas", account_key=ACCOUNT_KEY,
                                 permission=ContainerSasPermissions(write=True, create=True),
                                 expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    target = target_from_environment({"AUSCULT_BLOB_CONTAINER_SAS_URL": f"{azurite.endpoint}/clips-sas?{sas}",
                                      "AUSCULT_CA_FILE": str(tls.ca)})
    spool = Spool(tmp_path / "clips")
    data = spool_clip(spool, "m/2026-01-02/000000-normal.wav", 2)
    assert Uploader(spool, target).upload_pending()
    assert azurite.blobs("clips-sas") == {"m/2026-01-02/000000-normal.wav": data}


def test_storage_outage_keeps_clips_and_uploads_them_when_it_returns(tmp_path: Path, azurite, tls, caplog) -> None:
    spool = Spool(tmp_path / "clips")
    target = BlobTarget.from_connection_string(azurite.connection_string, "clips-outage", verify=str(tls.ca))
    results = []
    up = Uploader(spool, target, backoff=Backoff(initial=0.2, maximum=1.0), poll_seconds=0.5,
                  on_result=results.append)
    azurite.stop()
    try:
        with caplog.at_level(logging.WARNING):
            datas = {f"m/d/00000{i}-bearing.wav": spool_clip(spool, f"m/d/00000{i}-bearing.wav", i) for i in range(3)}
            up.start()
            assert wait_until(lambda: up.failures >= 2, 30)
        assert len(spool.pending()) == 3  # nothing deleted while storage is down
        assert results and not results[-1]["ok"] and "failed" in results[-1]["error"]
        assert "blob upload of m/d/000000-bearing.wav failed" in caplog.text
    finally:
        azurite.start()
    assert wait_until(lambda: not spool.pending(), 30), "clips not uploaded after the outage"
    up.stop()
    assert azurite.blobs("clips-outage") == datas
    assert up.uploaded == 3
    assert_no_secrets(caplog.text)


def test_iot_hub_file_upload_notifies_success_and_failure(tmp_path: Path, file_upload_hub, azurite, tls,
                                                          device_connection_string, caplog) -> None:
    target = target_from_environment({"AUSCULT_DEVICE_CONNECTION_STRING": device_connection_string,
                                      "AUSCULT_CA_FILE": str(tls.ca)})
    assert isinstance(target, FileUploadTarget)
    device = device_connection_string.split("DeviceId=")[1].split(";")[0]
    spool = Spool(tmp_path / "clips")
    data = spool_clip(spool, "m/2026-01-02/101010-imbalance.wav", 3)
    up = Uploader(spool, target)
    with caplog.at_level(logging.DEBUG):
        assert up.upload_pending()
        assert spool.pending() == []
        blobs = azurite.blobs(FILE_UPLOAD_CONTAINER)
        assert blobs[f"{device}/m/2026-01-02/101010-imbalance.wav"] == data
        request = file_upload_hub.requests[-1]
        note = file_upload_hub.notifications[-1]
        assert note["correlationId"] == request["correlationId"] and note["isSuccess"] is True
        assert note["statusCode"] == 200

        # storage down: the hub is still told, with the failure, and the clip stays
        spool_clip(spool, "m/2026-01-02/111111-imbalance.wav", 4)
        azurite.stop()
        try:
            assert not up.upload_pending()
        finally:
            azurite.start()
        note = file_upload_hub.notifications[-1]
        assert note["correlationId"] == file_upload_hub.requests[-1]["correlationId"]
        assert note["isSuccess"] is False and note["statusCode"] >= 400
        assert [c.name for c in spool.pending()] == ["m/2026-01-02/111111-imbalance.wav"]
        assert up.upload_pending() and spool.pending() == []
    assert file_upload_hub.unauthorized == 0
    assert_no_secrets(caplog.text)


def test_no_target_keeps_clips(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "clips")
    spool.put("m/d/1-a.wav", b"RIFF")
    up = Uploader(spool, target_from_environment({}))
    assert up.target is None and not up.upload_pending()
    assert len(spool.pending()) == 1 and up.stats()["pending"] == 1
