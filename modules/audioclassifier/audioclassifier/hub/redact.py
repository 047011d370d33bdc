"""Keep secrets out of logs: connection-string keys, SAS signatures and account keys are masked.

:func:`install` wraps the logging record factory, so every record from every logger (ours, the
Azure SDKs', paho's) is redacted once, at creation, whatever handler later writes it, exception
tracebacks included.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

__all__ = ["SECRET_PATTERNS", "find_secrets", "install", "redact"]

# A secret value runs until a separator of the string it lives in: ';' in connection strings,
# '&' or a quote or whitespace in URLs and JSON.
_VALUE = r"[^;&\s'\"<>]+"
SECRET_PATTERNS = (
    re.compile(r"(?i)(SharedAccessKey\s*=\s*)" + _VALUE),
    re.compile(r"(?i)(AccountKey\s*=\s*)" + _VALUE),
    re.compile(r"(?i)(SharedAccessSignature\s*=\s*)" + _VALUE),
    re.compile(r"(?i)([?&]sig=)" + _VALUE),
    re.compile(r"(?i)(\bsig=)" + _VALUE),
    re.compile(r"(?i)(\"?sasToken\"?\s*[:=]\s*\"?)" + _VALUE),
)
MASK = "***"


def redact(text: str) -> str:
    """``text`` with every secret value replaced by ``***`` (the key names stay, for debugging)."""
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


def find_secrets(text: str) -> list[str]:
    """The unmasked secret assignments in ``text`` (what a leak scan reports)."""
    found = []
    for pattern in SECRET_PATTERNS:
        for m in pattern.finditer(text):
            if not m.group(0)[len(m.group(1)):].startswith(MASK):
                found.append(m.group(0)[: len(m.group(1)) + 4] + "...")
    return found


_installed = False


def install() -> None:
    """Redact every log record created from now on (idempotent)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: keep the raw template, redacted
            message = str(record.msg)
        record.msg, record.args = redact(message), ()
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
