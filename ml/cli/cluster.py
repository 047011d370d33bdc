"""``python -m ml cluster``: propose fault types for unlabelled abnormal clips (PCA + KMeans)."""

from __future__ import annotations

import argparse
from pathlib import Path

from audioclassifier.argtypes import int_at_least
from ml.cli.frontend_options import add_frontend_options, frontend_params


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the verb and its options."""
    p = sub.add_parser(
        "cluster",
        help="fault-type discovery: PCA + KMeans over abnormal clips -> clusters.csv, scatter.png",
        description="Group the audio files under --input by their log-mel statistics (PCA + KMeans) and write "
        "OUT/clusters.csv (path, cluster, proposed_label, folder, pc1, pc2), OUT/choice.csv (each k's "
        "silhouette, smallest group, gap statistic) and OUT/scatter.png. Without --k, the number of groups is "
        "chosen so as not to over-split: partitions with a group under --min-size clips are not considered, and "
        "of the others the gap statistic's one-standard-error rule keeps the smallest k the data support (one "
        "group included). If "
        "the files sit in named folders, the adjusted Rand index against them is printed.",
    )
    p.add_argument("--input", required=True, type=Path, help="folder of (abnormal) clips, any layout")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--k", type=int_at_least(1), default=None,
                   help="number of clusters (default: chosen, 1..--max-k)")
    p.add_argument("--max-k", type=int_at_least(2), default=8, help="largest k considered (default 8)")
    p.add_argument("--min-size", type=int_at_least(1), default=None,
                   help="smallest group a chosen k may have (default: 2, or 5 %% of the clips when more)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channel", type=int, default=None, help="0-based channel or sensor axis (default: mix down)")
    p.add_argument("--sensor", action="store_true",
                   help="also read CSV/NPY sensor series (rate from a sensor.json sidecar or --sample-rate)")
    add_frontend_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Cluster and print a summary; 2 on bad input or options."""
    from collections import Counter

    from ml.cluster import cluster

    try:
        params = frontend_params(args)
        res = cluster(args.input, args.out, k=args.k, max_k=args.max_k, seed=args.seed, channel=args.channel,
                      params=params, sensor=args.sensor, min_size=args.min_size)
    except (FileNotFoundError, ValueError) as exc:
        print(f"cluster: {exc}")
        return 2
    for path, reason in sorted(res.failed.items()):
        print(f"skipped {path}: {reason}")
    if res.table:
        print("k  silhouette  smallest group  gap (se)")
        for r in res.table:
            sil = "-" if r["silhouette"] is None else f"{r['silhouette']:.3f}"
            gap = f"{r['gap']:.3f} ({r['gap_se']:.3f})" if "gap" in r else ""
            print(f"{r['k']:<2d} {sil:>10s}  {r['smallest']:>14d}  {gap}")
    sizes = Counter(int(c) for c in res.clusters)
    print(f"{len(res.paths)} clips -> {res.k} cluster{'s' if res.k > 1 else ''} (silhouette {res.silhouette:.3f}; "
          f"{res.how}): " + ", ".join(f"fault_{chr(65 + c)} {n}" for c, n in sorted(sizes.items())))
    for note in res.notes:
        print(f"NOTE: {note}")
    if res.adjusted_rand is not None:
        print(f"adjusted Rand index vs folder names: {res.adjusted_rand:.3f}")
    print(f"wrote {args.out / 'clusters.csv'} and {args.out / 'scatter.png'}")
    return 0
