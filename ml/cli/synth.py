"""``python -m ml synth``: write a labelled tree of synthetic machine sounds, or one long recording.

Tree mode (default) writes ``OUT/<label>/id_<NN>/<label>_id_<NN>_<KKKK>.wav`` (mono PCM_16) and
``OUT/manifest.csv`` (path, label, machine_id, severity, snr_db, seed). Several ``--snr-db`` values
are cycled over the clips of each machine and label (clip k gets value k mod count); the manifest
says which clip got which. A manifest row reproduces its clip::

    synth_clip(machine=machine_params(machine_id, seed=SEED), fault=label, severity=severity,
               seconds=..., sample_rate=..., snr_db=snr_db, rng=numpy.random.default_rng(seed))

Long mode (``--long-seconds``) writes one WAV in which a fault develops from ``--fault-start``,
plus ``<OUT without .wav>.json`` describing it. The parser imports nothing heavy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import ModuleType

from audioclassifier.argtypes import finite, int_at_least, number_in, positive, unit

_TREE_ONLY = ("labels", "machines", "first_machine_id", "clips_per_class", "seconds", "severity_range",
              "speed_jitter", "load_db_range", "gain_db_range")
_LONG_ONLY = ("fault", "fault_start", "ramp_seconds", "max_severity", "machine_id")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``synth`` verb and its options."""
    p = subparsers.add_parser(
        "synth",
        help="synthetic machine sounds with faults",
        description=(
            "Synthetic rotating-machine sounds (fan/pump/motor) with fault modes normal, imbalance, "
            "bearing, clogging, mixed with factory background at a given SNR. Tree mode writes "
            "OUT/<label>/id_<NN>/<label>_id_<NN>_<KKKK>.wav and OUT/manifest.csv; with --long-seconds, "
            "OUT is one WAV file in which a fault develops from --fault-start."
        ),
    )
    add = p.add_argument
    add("--out", required=True, type=Path, metavar="OUT", help="output folder (a .wav with --long-seconds)")
    add("--seed", type=int_at_least(0), default=0, metavar="N", help="seed of fleet and clips (default 0)")
    add(
        "--snr-db",
        type=finite,
        action="append",
        metavar="DB",
        help="machine-to-background power ratio in dB (default 0); repeat to cycle over clips, e.g. -6, 0, 6",
    )
    add("--sample-rate", type=int_at_least(1), default=16000, metavar="HZ", help="Hz (default 16000)")
    add = p.add_argument_group("tree mode").add_argument
    add("--labels", metavar="L1,L2", help="comma-separated labels (default: all four)")
    add("--machines", type=int_at_least(1), metavar="N", help="machine IDs per label (default 4)")
    add("--first-machine-id", type=int_at_least(0), metavar="ID", help="first machine ID (default 0)")
    add("--clips-per-class", type=int_at_least(1), metavar="N", help="clips per label and machine (default 20)")
    add("--seconds", type=positive, metavar="S", help="clip length in seconds (default 10)")
    add(
        "--severity-range",
        type=unit,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="fault severity of each clip is drawn uniformly from [MIN, MAX] (default 0.5 1.0)",
    )
    add = p.add_argument_group(
        "domain shift (tree mode; each clip draws its own operating point, reproducibly; off by default)"
    ).add_argument
    add(
        "--speed-jitter",
        type=number_in(0.0, 0.5, open_hi=True),
        metavar="J",
        help="relative shaft-speed change drawn uniformly from [-J, J] per clip (0.1 = +-10 %%)",
    )
    add(
        "--load-db-range",
        type=finite,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="load change in dB drawn per clip: flow noise +X dB, blade-pass harmonics +X/2 dB",
    )
    add(
        "--gain-db-range",
        type=finite,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="microphone gain in dB drawn per clip (the whole clip, background included)",
    )
    add = p.add_argument_group("long-recording mode").add_argument
    add("--long-seconds", type=positive, metavar="S", help="write one recording this long to --out (a .wav)")
    add("--fault", metavar="LABEL", help="fault that develops: imbalance, bearing, clogging (default normal)")
    add("--fault-start", type=finite, metavar="S", help="seconds of healthy sound first (default: half)")
    add("--ramp-seconds", type=positive, metavar="S", help="seconds to reach full severity (default 20)")
    add("--max-severity", type=unit, metavar="X", help="severity reached after the ramp (default 1.0)")
    add("--machine-id", type=int_at_least(0), metavar="ID", help="machine ID (default 0)")
    p.set_defaults(_synth_parser=p)
    return p


def _error(args: argparse.Namespace, message: str) -> int:
    """Print a usage error the way argparse does; return exit code 2."""
    parser = getattr(args, "_synth_parser", None)
    if parser is not None:
        parser.print_usage(sys.stderr)
    prog = parser.prog if parser is not None else "python -m ml synth"
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Write the tree or the long recording; 0 on success, 2 on bad arguments."""
    from ml import synth

    misplaced = _LONG_ONLY if args.long_seconds is None else _TREE_ONLY
    given = [name for name in misplaced if getattr(args, name) is not None]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        mode = "needs --long-seconds" if args.long_seconds is None else "is for tree mode, not --long-seconds"
        return _error(args, f"{flags} {mode}")
    snrs = args.snr_db or [0.0]
    try:
        if args.long_seconds is not None:
            return _run_long(args, snrs, synth)
        return _run_tree(args, snrs, synth)
    except ValueError as exc:
        return _error(args, str(exc))


def _run_tree(args: argparse.Namespace, snrs: list[float], synth: ModuleType) -> int:
    """Tree mode: every label x machine x clip, plus the manifest."""
    import csv

    import numpy as np
    import soundfile

    labels = [s.strip() for s in (args.labels or ",".join(synth.FAULTS)).split(",") if s.strip()]
    unknown = [label for label in labels if label not in synth.FAULTS]
    if unknown or not labels or len(set(labels)) != len(labels):
        choices = ",".join(synth.FAULTS)
        return _error(args, f"--labels must be distinct labels from {choices}, got {args.labels!r}")
    machines = args.machines or 4
    first = args.first_machine_id or 0
    clips = args.clips_per_class or 20
    seconds = args.seconds or 10.0
    sev_lo, sev_hi = args.severity_range or (0.5, 1.0)
    if sev_lo > sev_hi:
        return _error(args, f"--severity-range MIN must be <= MAX, got {sev_lo} {sev_hi}")
    if round(seconds * args.sample_rate) < 1:
        return _error(args, f"--seconds {seconds} gives no samples")
    if args.out.exists() and not args.out.is_dir():
        return _error(args, f"--out {args.out} exists and is not a folder")
    for name, rng_ in (("--load-db-range", args.load_db_range), ("--gain-db-range", args.gain_db_range)):
        if rng_ is not None and not (rng_[0] <= rng_[1] and max(abs(rng_[0]), abs(rng_[1])) <= 20.0):
            return _error(args, f"{name} needs MIN <= MAX within +-20 dB, got {rng_[0]:g} {rng_[1]:g}")
    shifting = args.speed_jitter is not None or args.load_db_range is not None or args.gain_db_range is not None

    ids = list(range(first, first + machines))
    fleet = {i: synth.machine_params(i, seed=args.seed) for i in ids}
    args.out.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(args.out / "manifest.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        # the shift columns appear only when a shift is asked for: default trees stay byte-identical
        writer.writerow(["path", "label", "machine_id", "severity", "snr_db", "seed"]
                        + (["speed", "load_db", "gain_db"] if shifting else []))
        for label in labels:
            code = synth.FAULTS.index(label)  # stable per label, whatever --labels' order
            for i in ids:
                folder = args.out / label / f"id_{i:02d}"
                folder.mkdir(parents=True, exist_ok=True)
                for k in range(clips):
                    clip_seed = int(np.random.SeedSequence([args.seed, i, code, k]).generate_state(1)[0])
                    severity = 0.0
                    if label != "normal":
                        draw = np.random.default_rng(np.random.SeedSequence([args.seed, i, code, k, 1]))
                        severity = round(float(draw.uniform(sev_lo, sev_hi)), 4)
                    snr = snrs[k % len(snrs)]
                    shift = _draw_shift(args, [args.seed, i, code, k, 2]) if shifting else (0.0, 0.0, 0.0)
                    machine = synth.shifted_machine(fleet[i], speed=shift[0], load_db=shift[1])
                    x = synth.synth_clip(
                        machine=machine,
                        fault=label,
                        severity=severity,
                        seconds=seconds,
                        sample_rate=args.sample_rate,
                        snr_db=snr,
                        rng=np.random.default_rng(clip_seed),
                    )
                    x = synth.apply_gain_db(x, shift[2])
                    path = folder / f"{label}_id_{i:02d}_{k:04d}.wav"
                    soundfile.write(path, x, args.sample_rate, subtype="PCM_16")
                    row = [path.relative_to(args.out).as_posix(), label, i, severity, snr, clip_seed]
                    if shifting:
                        row += list(shift)
                    writer.writerow(row)
                    count += 1
    snr_text = ", ".join(f"{s:g}" for s in snrs)
    print(
        f"wrote {count} clips ({len(labels)} labels x {machines} machines x {clips} clips, {seconds:g} s, "
        f"{args.sample_rate} Hz, SNR {snr_text} dB) to {args.out}; manifest: {args.out / 'manifest.csv'}"
    )
    for i, m in fleet.items():
        print(
            f"  id_{i:02d}: shaft {m.shaft_hz:.1f} Hz, {m.n_blades} blades "
            f"(blade pass {m.blade_pass_hz:.0f} Hz), "
            f"bearing defect {m.bearing_hz:.0f} Hz ringing {m.bearing_resonance_hz:.0f} Hz, "
            f"clogging speed {m.clog_shift:+.1%}"
        )
    return 0


def _draw_shift(args: argparse.Namespace, entropy: list[int]) -> tuple[float, float, float]:
    """``(speed, load_db, gain_db)`` of one clip, from its own seed (the clip's sound seed is untouched)."""
    import numpy as np

    r = np.random.default_rng(np.random.SeedSequence(entropy))
    draws = r.random(3)
    j = args.speed_jitter or 0.0
    lo_l, hi_l = args.load_db_range or (0.0, 0.0)
    lo_g, hi_g = args.gain_db_range or (0.0, 0.0)
    return (round(float(j * (2 * draws[0] - 1)), 4), round(float(lo_l + (hi_l - lo_l) * draws[1]), 2),
            round(float(lo_g + (hi_g - lo_g) * draws[2]), 2))


def _run_long(args: argparse.Namespace, snrs: list[float], synth: ModuleType) -> int:
    """Long mode: one WAV in which the fault develops, and a JSON sidecar that says how."""
    import json

    import soundfile

    if len(snrs) != 1:
        return _error(args, "--long-seconds takes a single --snr-db")
    if args.out.suffix.lower() != ".wav":
        return _error(args, f"with --long-seconds, --out must be a .wav file, got {args.out}")
    fault = args.fault or "normal"
    if fault not in synth.FAULTS:
        return _error(args, f"--fault must be one of {', '.join(synth.FAULTS)}, got {fault!r}")
    fault_start = args.long_seconds / 2 if args.fault_start is None else args.fault_start
    if not 0.0 <= fault_start <= args.long_seconds:
        limit = f"[0, --long-seconds={args.long_seconds:g}]"
        return _error(args, f"--fault-start must be in {limit}, got {fault_start:g}")
    ramp = args.ramp_seconds or 20.0
    max_severity = 1.0 if args.max_severity is None else args.max_severity
    machine_id = args.machine_id or 0
    machine = synth.machine_params(machine_id, seed=args.seed)
    x = synth.synth_recording(
        machine=machine,
        fault=fault,
        fault_start=fault_start,
        seconds=args.long_seconds,
        ramp_seconds=ramp,
        max_severity=max_severity,
        sample_rate=args.sample_rate,
        snr_db=snrs[0],
        seed=args.seed,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(args.out, x, args.sample_rate, subtype="PCM_16")
    info = {
        "path": args.out.name,
        "fault": fault,
        "fault_start": fault_start,
        "ramp_seconds": ramp,
        "max_severity": max_severity,
        "seconds": args.long_seconds,
        "sample_rate": args.sample_rate,
        "snr_db": snrs[0],
        "machine_id": machine_id,
        "seed": args.seed,
        "shaft_hz": machine.shaft_hz,
        "blade_pass_hz": machine.blade_pass_hz,
    }
    sidecar = args.out.with_suffix(".json")
    sidecar.write_text(json.dumps(info, indent=2) + "\n")
    story = (
        "healthy throughout"
        if fault == "normal"
        else f"{fault} from {fault_start:g} s, severity {max_severity:g} from {fault_start + ramp:g} s"
    )
    print(
        f"wrote {args.out} ({args.long_seconds:g} s, {args.sample_rate} Hz, SNR {snrs[0]:g} dB): "
        f"machine id_{machine_id:02d}, {story}; details: {sidecar}"
    )
    return 0
