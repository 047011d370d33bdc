"""Secrets never reach a log: connection-string keys, SAS signatures and account keys are masked."""

from __future__ import annotations

import logging

from audioclassifier.hub import redact as r

CONN = "HostName=h.azure-devices.net;DeviceId=d;ModuleId=m;SharedAccessKey=c2VjcmV0a2V5MTIz;GatewayHostName=x"
BLOB = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=QWNjb3VudEtleQ==;EndpointSuffix=core.windows.net"
SAS = "https://a.blob.core.windows.net/c/b.wav?sv=2024-01-01&se=2030&sp=cw&sig=AbC%2Bdef%3D&spr=https"
TOKEN = "SharedAccessSignature sr=h%2Fdevices%2Fd&sig=ZmFrZQ%3D%3D&se=1700000000"


def test_redact_masks_every_kind_and_keeps_the_rest() -> None:
    for text in (CONN, BLOB, SAS, TOKEN, '{"sasToken": "?sv=1&sig=abc", "x": 1}'):
        assert r.find_secrets(text), text
        masked = r.redact(text)
        assert r.find_secrets(masked) == [], masked
    assert r.redact(CONN).endswith("SharedAccessKey=***;GatewayHostName=x")
    assert "AccountName=a" in r.redact(BLOB) and "c2VjcmV0" not in r.redact(CONN)
    assert r.redact("score 0.9, sigma=3") == "score 0.9, sigma=3"


def test_every_log_record_is_redacted_including_tracebacks(caplog) -> None:
    r.install()
    log = logging.getLogger("some.sdk")
    with caplog.at_level(logging.DEBUG):
        log.debug("connecting with %s", CONN)
        log.info("PUT %s", SAS)
        try:
            raise ValueError(f"bad credential {BLOB}")
        except ValueError:
            log.exception("failed")
    text = caplog.text + "".join(caplog.handler.format(rec) for rec in caplog.records)
    assert "connecting with HostName=" in text and "SharedAccessKey=***" in text
    assert r.find_secrets(text) == []
    assert "c2VjcmV0a2V5MTIz" not in text and "QWNjb3VudEtleQ" not in text and "AbC%2Bdef" not in text
