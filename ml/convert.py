"""Convert an audio tree to log-mel arrays and images, in parallel, skipping bad files."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from audioclassifier.audio_io import AudioFileError, load_audio
from audioclassifier.features import LogMelParams, logmel
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


def convert_file(src: Path, npy: Path, *, params: LogMelParams, png: bool, channel: int | None) -> int:
    """Write ``npy`` (and its PNG) for one audio file; returns the number of frames."""
    y = load_audio(src, sample_rate=params.sample_rate, channel=channel)
    s = logmel(y, params=params)
    if s.shape[1] == 0:
        raise AudioFileError(src, f"shorter than one FFT frame ({len(y)} samples < n_fft {params.n_fft})")
    npy.parent.mkdir(parents=True, exist_ok=True)
    np.save(npy, s)
    if png:
        from ml.plots import save_spectrogram_png

        save_spectrogram_png(s, npy.with_suffix(".png"), params=params, title=str(src.name))
    return int(s.shape[1])


def _job(task: tuple[Path, Path, LogMelParams, bool, int | None]) -> tuple[str, int | None, str]:
    src, npy, params, png, channel = task
    try:
        return str(src), convert_file(src, npy, params=params, png=png, channel=channel), ""
    except (AudioFileError, ValueError, OSError) as exc:
        reason = exc.reason if isinstance(exc, AudioFileError) else str(exc)
        return str(src), None, reason


def convert_tree(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, params: LogMelParams = LogMelParams(),
    jobs: int = 1, png: bool = True, channel: int | None = None,
) -> ConvertReport:
    """Mirror ``src`` under ``dst`` as ``.npy`` log-mels (+ ``.png``); writes ``dst/convert.json``."""
    root, out = Path(src), Path(dst)
    files = find_audio(root)
    base = root if root.is_dir() else root.parent
    tasks = [(f, out / f.relative_to(base).with_suffix(".npy"), params, png, channel) for f in files]
    report = ConvertReport()
    bar = tqdm(total=len(tasks), unit="file", desc="convert", disable=None)
    with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(tasks) or 1))) as pool:
        for path, frames, reason in pool.map(_job, tasks, chunksize=4):
            if frames is None:
                report.failed[path] = reason
                bar.write(f"skipped {path}: {reason}")
            else:
                report.converted.append(path)
                report.frames += frames
            bar.update()
    bar.close()
    out.mkdir(parents=True, exist_ok=True)
    (out / "convert.json").write_text(json.dumps(
        {"params": params.to_dict(), "converted": report.converted, "failed": report.failed}, indent=1))
    return report
