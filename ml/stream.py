"""Model windows of a file of any length in bounded memory, as the module cuts them.

:class:`StreamWindows` (the module's, :mod:`audioclassifier.analysis`: its ``POST /api/score``
cuts uploads with it) takes mono blocks at the front end's rate (``audio_io.iter_blocks``),
computes the log-mel with :class:`~audioclassifier.features.LogMelStream`, and returns each
window with its level in dBFS (the module's energy gate compares it with ``energy_gate_dbfs``).
Windows start every ``hop_frames`` columns; :meth:`finish` adds one aligned to the end of the
file when the hops do not reach it. At most one window of columns and samples is kept.
:func:`signal_blocks` feeds it from an audio file or a sensor series.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from audioclassifier.analysis import StreamWindow, StreamWindows
from audioclassifier.audio_io import iter_blocks
from audioclassifier.features import LogMelParams

__all__ = ["StreamWindow", "StreamWindows", "signal_blocks"]


def signal_blocks(path: str | os.PathLike[str], *, params: LogMelParams, channel: int | None, sensor: bool = False,
                  block_seconds: float = 10.0) -> Iterator[np.ndarray]:
    """Mono blocks at the front end's rate: audio streamed with ``iter_blocks``; a series file
    (CSV/NPY, small by nature) read whole and given as one block."""
    from ml.series import is_series, load_series

    if is_series(path):
        yield load_series(path, sample_rate=params.sample_rate, channel=channel)
        return
    yield from iter_blocks(path, block_frames=max(1, int(block_seconds * params.sample_rate)),
                           sample_rate=params.sample_rate, channel=channel, sensor=sensor)
