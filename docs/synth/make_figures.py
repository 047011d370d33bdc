"""Draw the figures of the synthetic-data section: one log-mel spectrogram PNG per class, and one of
a long recording in which a bearing fault develops.

    python docs/synth/make_figures.py [--out docs/synth] [--seed 0] [--machine-id 0]

Each class figure shows the same machine, clean (top) and mixed with factory background at 0 dB
SNR (bottom), with the project's own log-mel front end (what the models see); beside each, the
mean change per mel band against a normal clip of the same machine and conditions (for ``normal``:
another normal clip, i.e. the normal variation). Severity 1; the labelled tree draws severities in [0.5, 1].
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
try:
    import audioclassifier.features  # noqa: F401  (installed with `pip install -e .`)
except ModuleNotFoundError:
    sys.path.insert(0, str(ROOT / "modules" / "audioclassifier"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402  (a matplotlib dependency)

from audioclassifier.features import LogMelParams, logmel, mel_frequencies  # noqa: E402
from ml import synth  # noqa: E402

PARAMS = LogMelParams()  # the model card's default front end: 16 kHz, n_fft 1024, hop 512, 128 mels
SECONDS = 6.0
FREQ_TICKS = (100, 500, 1000, 2000, 4000, 8000)
VMAX_DB = 20.0  # levels are calibrated, so one colour scale fits every figure


def _mel_axis(ax: plt.Axes) -> None:
    """Label a mel-bin axis in Hz."""
    centres = mel_frequencies(n_mels=PARAMS.n_mels + 2, fmin=PARAMS.fmin, fmax=PARAMS.fmax_hz)[1:-1]
    ticks = [t for t in FREQ_TICKS if t <= PARAMS.fmax_hz]
    ax.set_yticks(np.interp(ticks, centres, np.arange(PARAMS.n_mels)) + 0.5)
    ax.set_yticklabels([f"{t // 1000}k" if t >= 1000 else str(t) for t in ticks])


def _show(ax: plt.Axes, spec: np.ndarray) -> matplotlib.image.AxesImage:
    """Draw a log-mel spectrogram (dB) on time (s) x mel-bin axes, same colour scale everywhere."""
    extent = (0.0, spec.shape[1] * PARAMS.hop_length / PARAMS.sample_rate, 0.0, PARAMS.n_mels)
    return ax.imshow(
        spec, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=VMAX_DB - 80, vmax=VMAX_DB
    )


def _clip(machine: synth.MachineParams, fault: str, snr_db: float | None, seed: int) -> np.ndarray:
    """A figure clip at severity 1; equal seeds share everything but the fault."""
    return synth.synth_clip(
        machine=machine, fault=fault, severity=1.0, seconds=SECONDS, sample_rate=PARAMS.sample_rate,
        snr_db=snr_db, rng=np.random.default_rng(seed),
    )


def class_figure(*, machine: synth.MachineParams, fault: str, seed: int, path: Path) -> None:
    """Clean and 0 dB log-mel spectrograms of ``fault``, each with its mean change against normal."""
    ref_seed = seed + 1 if fault == "normal" else seed
    rows = []
    for snr_db, name in ((None, "clean"), (0.0, "0 dB SNR")):
        spec = logmel(_clip(machine, fault, snr_db, seed), params=PARAMS)
        ref = logmel(_clip(machine, "normal", snr_db, ref_seed), params=PARAMS)
        rows.append((spec, spec.mean(1) - ref.mean(1), name))
    fig = plt.figure(figsize=(6.4, 4.2), dpi=80)
    grid = fig.add_gridspec(2, 2, width_ratios=(4.2, 1.0), wspace=0.06, hspace=0.12)
    bins = np.arange(PARAMS.n_mels) + 0.5
    image = None
    for i, (spec, change, name) in enumerate(rows):
        ax = fig.add_subplot(grid[i, 0])
        image = _show(ax, spec)
        _mel_axis(ax)
        ax.set_ylabel("Hz")
        ax.text(0.01, 0.97, name, transform=ax.transAxes, va="top", color="w", fontsize=8)
        side = fig.add_subplot(grid[i, 1], sharey=ax)
        side.plot(change, bins, lw=0.8, color="tab:blue")
        side.axvline(0, color="0.5", lw=0.5)
        side.set_xlim(-15, 25)
        side.tick_params(labelleft=False, labelsize=7)
        if i == 0:
            ax.set_title(f"{fault}: machine id_{machine.machine_id:02d} (f_r {machine.shaft_hz:.0f} Hz, "
                         f"blade pass {machine.blade_pass_hz:.0f} Hz)", fontsize=9)
            side.set_title("vs normal" if fault != "normal" else "2nd normal", fontsize=8)
            ax.tick_params(labelbottom=False)
            side.tick_params(labelbottom=False)
        else:
            ax.set_xlabel("time (s)")
            side.set_xlabel("mean dB", fontsize=8)
    fig.colorbar(image, ax=fig.axes, location="right", pad=0.02, fraction=0.03).ax.tick_params(labelsize=7)
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    """Save as a small palette PNG (spectrogram noise compresses badly in 24-bit colour)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(palette=_palette(), dither=Image.Dither.NONE)
    image.save(path, optimize=True)


def _palette() -> Image.Image:
    """A 256-colour palette: the colour map, greys for text and lines, and the line colours."""
    cmap = np.asarray(matplotlib.colormaps["magma"](np.linspace(0, 1, 192)))[:, :3]
    greys = np.repeat(np.linspace(0, 1, 48)[:, None], 3, axis=1)
    lines = np.array([matplotlib.colors.to_rgb(c) for c in ("tab:blue", "c", "tab:orange")])
    lines = np.concatenate([lines * w + (1 - w) for w in (1.0, 0.75, 0.5, 0.25)])  # anti-aliased edges
    colours = np.concatenate([cmap, greys, lines])
    colours = np.concatenate([colours, np.ones((256 - len(colours), 3))])
    palette = Image.new("P", (1, 1))
    palette.putpalette((colours * 255).round().astype(np.uint8).ravel().tolist())
    return palette


def long_figure(*, machine: synth.MachineParams, seed: int, path: Path) -> None:
    """Log-mel of a 120 s recording at 0 dB in which a bearing fault starts at 60 s (20 s ramp)."""
    fault_start, ramp, seconds = 60.0, 20.0, 120.0
    x = synth.synth_recording(
        machine=machine, fault="bearing", fault_start=fault_start, seconds=seconds, ramp_seconds=ramp,
        sample_rate=PARAMS.sample_rate, snr_db=0.0, seed=seed,
    )
    spec = logmel(x, params=PARAMS)
    fig, ax = plt.subplots(figsize=(6.4, 2.8), dpi=80)
    image = _show(ax, spec)
    for t in (fault_start, fault_start + ramp):
        ax.axvline(t, color="c", lw=0.8, ls="--")
    _mel_axis(ax)
    ax.set_ylabel("Hz")
    ax.set_xlabel("time (s)")
    ax.set_title(f"long recording, 0 dB SNR: bearing fault from {fault_start:.0f} s, full at "
                 f"{fault_start + ramp:.0f} s (id_{machine.machine_id:02d})", fontsize=9)
    fig.colorbar(image, ax=ax, pad=0.02).ax.tick_params(labelsize=7)
    _save(fig, path)


def main(argv: list[str] | None = None) -> int:
    """Write ``normal.png``, ``imbalance.png``, ``bearing.png``, ``clogging.png``, ``long_bearing.png``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--machine-id", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = synth.machine_params(args.machine_id, seed=args.seed)
    for fault in synth.FAULTS:
        path = args.out / f"{fault}.png"
        class_figure(machine=machine, fault=fault, seed=args.seed + 100, path=path)
        print(f"{path} ({path.stat().st_size // 1024} KB)")
    path = args.out / "long_bearing.png"
    long_figure(machine=machine, seed=args.seed, path=path)
    print(f"{path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
