"""``python -m ml cluster``: propose fault types for unlabelled abnormal clips (PCA + KMeans)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the verb and its options."""
    p = sub.add_parser(
        "cluster",
        help="fault-type discovery: PCA + KMeans over abnormal clips -> clusters.csv, scatter.png",
        description="Group the audio files under --input by their log-mel statistics (PCA + KMeans, k by "
        "silhouette unless --k) and write OUT/clusters.csv (path, cluster, proposed_label, folder, pc1, pc2) "
        "and OUT/scatter.png. If the files sit in named folders, the adjusted Rand index against them is printed.",
    )
    p.add_argument("--input", required=True, type=Path, help="folder of (abnormal) clips, any layout")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--k", type=int, default=None, help="number of clusters (default: by silhouette, 2..--max-k)")
    p.add_argument("--max-k", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channel", type=int, default=None, help="0-based channel (default: mix down)")
    return p


def run(args: argparse.Namespace) -> int:
    """Cluster and print a summary."""
    from collections import Counter

    from ml.cluster import cluster

    if args.k is not None and args.k < 2:
        print("cluster: --k must be >= 2")
        return 2
    try:
        res = cluster(args.input, args.out, k=args.k, max_k=args.max_k, seed=args.seed, channel=args.channel)
    except (FileNotFoundError, ValueError) as exc:
        print(f"cluster: {exc}")
        return 2
    for path, reason in sorted(res.failed.items()):
        print(f"skipped {path}: {reason}")
    sizes = Counter(int(c) for c in res.clusters)
    print(f"{len(res.paths)} clips -> {res.k} clusters (silhouette {res.silhouette:.3f}): "
          + ", ".join(f"fault_{chr(65 + c)} {n}" for c, n in sorted(sizes.items())))
    if res.adjusted_rand is not None:
        print(f"adjusted Rand index vs folder names: {res.adjusted_rand:.3f}")
    print(f"wrote {args.out / 'clusters.csv'} and {args.out / 'scatter.png'}")
    return 0
