"""``python -m ml dataset pull``: the labelled field clips of a blob container → a training tree."""

from __future__ import annotations

import argparse
import os

#: Where the secrets may come from instead of the command line (which other users can see in ``ps``).
ENV_CONNECTION_STRING = "AUSCULT_BLOB_CONNECTION_STRING"
ENV_SAS_URL = "AUSCULT_BLOB_CONTAINER_SAS_URL"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the verb and its sub-commands."""
    p = sub.add_parser("dataset", help="field data: pull labelled alert clips into a training tree",
                       description="Field data for training.")
    verbs = p.add_subparsers(dest="dataset_verb", required=True, metavar="ACTION")
    pull = verbs.add_parser(
        "pull", help="labelled alert clips of a blob container -> ROOT/<label>/<machine>/*.wav",
        description="Mirror the alert clips a technician gave a verdict on (the module's `feedback` method "
        "marks them: blob metadata, or a sidecar <clip>.json) into ROOT/<label>/<machine>/*.wav with "
        "ROOT/manifest.csv, the tree `python -m ml train` reads. Confirmed clips go under their label, false "
        "alarms under theirs (normal unless given). Pulling again syncs: unchanged clips are not downloaded "
        "again, relabelled ones move, undone ones are removed (only files the previous manifest lists). "
        f"The secrets may come from {ENV_CONNECTION_STRING} or {ENV_SAS_URL} instead of the command line. "
        "Exit code: 0 some clips pulled, 1 none labelled, 2 bad arguments or storage unreachable.")
    pull.add_argument("--out", required=True, help="the tree's root folder (created)")
    src = pull.add_mutually_exclusive_group()
    src.add_argument("--connection-string", help=f"storage connection string [env {ENV_CONNECTION_STRING}]")
    src.add_argument("--sas-url", help=f"container SAS URL with read and list permissions [env {ENV_SAS_URL}]")
    pull.add_argument("--container", default="auscult-clips",
                      help="container (with --connection-string; default auscult-clips, as the module's)")
    pull.add_argument("--verdict", choices=("confirmed", "false_alarm", "all"), default="all",
                      help="which verdicts to pull (default all: confirmed and false_alarm)")
    pull.add_argument("--machine", help="only this machine's clips")
    pull.add_argument("--prefix", help="only blobs whose name starts with this (e.g. a device ID or machine)")
    pull.add_argument("--ca-file", help="an extra CA certificate (PEM) to trust for the storage endpoint")
    return p


def run(args: argparse.Namespace) -> int:
    """Pull; print a summary; see the description for exit codes."""
    from azure.core.exceptions import AzureError

    from ml.fieldclips import VERDICTS, container_client, pull

    conn = args.connection_string or (None if args.sas_url else os.environ.get(ENV_CONNECTION_STRING))
    sas = args.sas_url or (None if args.connection_string else os.environ.get(ENV_SAS_URL))
    if not conn and not sas:
        print(f"dataset pull: give --connection-string or --sas-url (or set {ENV_CONNECTION_STRING} or {ENV_SAS_URL})")
        return 2
    verdicts = VERDICTS if args.verdict == "all" else (args.verdict,)
    try:
        container = container_client(connection_string=conn, container=args.container, sas_url=sas,
                                     ca_file=args.ca_file)
        report = pull(container, args.out, verdicts=verdicts, machine=args.machine, prefix=args.prefix)
    except (AzureError, ValueError, OSError) as exc:
        from audioclassifier.hub.redact import redact

        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"dataset pull: {type(exc).__name__}: {redact(first)[:300]}")
        return 2
    print(report.summary())
    return 0 if report.clips else 1
