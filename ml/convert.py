"""Convert an audio tree to log-mel arrays and images, in parallel, skipping bad files."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from audioclassifier.audio_io import AudioFileError
from audioclassifier.features import LogMelParams, LogMelStream
from ml.dataset import find_audio

__all__ = ["ConvertReport", "convert_file", "convert_tree"]


@dataclass
class ConvertReport:
    """What a conversion did: files written and files refused (with the reason)."""

    converted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0

    def summary(self) -> str:
        """Readable end-of-run summary."""
        lines = [f"converted {len(self.converted)} file(s), {self.frames} log-mel frames; failed {len(self.failed)}"]
        lines += [f"  FAILED {path}: {reason}" for path, reason in sorted(self.failed.items())]
        return "\n".join(lines)


#: the default colour scale of spectrogram PNGs (dB): the same for every image of a tree
DB_RANGE = (-100.0, 40.0)


def convert_file(src: Path, npy: Path, *, params: LogMelParams, png: bool, channel: int | None,
                 title: str = "", db_range: tuple[float, float] | None = DB_RANGE, sensor: bool = False) -> int:
    """Write ``npy`` (and its PNG) for one file, streamed in blocks; returns the number of frames.

    The PNG's colour scale is ``db_range`` for every image (None: each image's own), its title
    ``title`` (the path under the tree: label, machine and file)."""
    from ml.stream import signal_blocks

    stream = LogMelStream(params)
    cols = [stream.push(y) for y in signal_blocks(src, params=params, channel=channel, sensor=sensor)]
    s = np.concatenate(cols, axis=1) if cols else np.empty((params.n_mels, 0), np.float32)
    if s.shape[1] == 0:
        raise AudioFileError(src, f"shorter than one FFT frame ({stream.samples_seen} samples < n_fft {params.n_fft})")
    npy.parent.mkdir(parents=True, exist_ok=True)
    np.save(npy, s)
    if png:
        from ml.plots import save_spectrogram_png

        save_spectrogram_png(s, npy.with_suffix(".png"), params=params, title=title or str(src.name), db_range=db_range)
    return int(s.shape[1])


def _job(task: tuple[Path, Path, LogMelParams, bool, int | None, str, bool]) -> tuple[str, int | None, str]:
    src, npy, params, png, channel, title, sensor = task
    try:
        return str(src), convert_file(src, npy, params=params, png=png, channel=channel, title=title,
                                      sensor=sensor), ""
    except (AudioFileError, ValueError, OSError) as exc:
        reason = exc.reason if isinstance(exc, AudioFileError) else str(exc)
        return str(src), None, reason


def convert_tree(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, params: LogMelParams = LogMelParams(),
    jobs: int = 1, png: bool = True, channel: int | None = None, sensor: bool = False,
) -> ConvertReport:
    """Mirror ``src`` under ``dst`` as ``.npy`` log-mels (+ ``.png``); writes ``dst/convert.json``."""
    root, out = Path(src), Path(dst)
    files = find_audio(root, sensor=sensor)
    base = root if root.is_dir() else root.parent
    tasks = [(f, out / f.relative_to(base).with_suffix(".npy"), params, png, channel, str(f.relative_to(base)), sensor)
             for f in files]
    report = ConvertReport()
    bar = tqdm(total=len(tasks), unit="file", desc="convert", disable=None)
    with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(tasks) or 1))) as pool:
        for path, frames, reason in pool.map(_job, tasks, chunksize=4):
            if frames is None:
                report.failed[path] = reason
            else:
                report.converted.append(path)
                report.frames += frames
            bar.update()
    bar.close()
    out.mkdir(parents=True, exist_ok=True)
    (out / "convert.json").write_text(json.dumps(
        {"params": params.to_dict(), "converted": report.converted, "failed": report.failed}, indent=1))
    return report
