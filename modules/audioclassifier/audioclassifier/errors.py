"""One exception root for the module (the librosa ``util/exceptions.py`` idea).

Every error the module raises on purpose derives from :class:`AuscultError`, so a caller that
must not die (the audio worker, a method handler, the twin) catches one type and lets programming
errors (``TypeError``, ``KeyError``, ...) surface as tracebacks. Two marker classes say what to do
about a failure, as the azure-iot-sdk-python samples do:

* :class:`TransientError`: the world may get better by itself (network down, hub unreachable,
  disk full, a device busy): retry with backoff, report the state meanwhile;
* :class:`FatalError`: retrying cannot help (bad credentials, a missing or invalid model, a
  configuration that cannot work): report it as a fatal state, stop retrying, and wait for a
  change (a new twin value, a new deployment).

Leaf errors keep a built-in base where callers relied on it (``SettingsError`` is a ``ValueError``).
"""

from __future__ import annotations

__all__ = ["AuscultError", "FatalError", "TransientError"]


class AuscultError(Exception):
    """Root of every error the module raises on purpose."""


class TransientError(AuscultError):
    """A failure that may go away by itself: retry with backoff."""


class FatalError(AuscultError):
    """A failure that retrying cannot mend: report it and wait for a configuration change."""
