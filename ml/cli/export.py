"""``python -m ml export``: re-export a model with an edited card (threshold, version, notes),
checking the ONNX contract on the way."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the verb and its options."""
    p = sub.add_parser(
        "export",
        help="re-export a model with an edited card (threshold, version, dataset note)",
        description="Copy MODEL to --out with card edits, after checking the contract (input 'logmel' "
        "(batch, n_mels, window_frames), output 'score' or 'probs', dynamic batch, opset >= 17). Use it to "
        "set a site-specific threshold without retraining.",
    )
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--threshold", type=float, default=None, help="new decision threshold")
    p.add_argument("--threshold-method", default=None, help="how the new threshold was set (default: 'set by hand')")
    p.add_argument("--version", default=None, help="new model version")
    p.add_argument("--dataset-note", default=None, help="replace trained.dataset")
    return p


def run(args: argparse.Namespace) -> int:
    """Check, edit, write."""
    import math

    import onnx

    from audioclassifier.card import CardError, ModelCard
    from ml.export import check_contract
    from ml.inference import OnnxModel
    from ml.modelcard import save_with_card

    try:
        model = OnnxModel(args.model)
        proto = onnx.load(str(args.model))
        check_contract(proto, model.card)
        d = model.card.to_dict()
        if args.threshold is not None:
            if not math.isfinite(args.threshold):
                raise ValueError("--threshold must be finite")
            d["threshold"] = args.threshold
            d["threshold_method"] = args.threshold_method or "set by hand (python -m ml export --threshold)"
        if args.version:
            d["version"] = args.version
        if args.dataset_note:
            d.setdefault("trained", {})["dataset"] = args.dataset_note
        card = ModelCard.from_dict(d, source=str(args.out))
        save_with_card(proto, card, args.out)
    except (CardError, ValueError, OSError) as exc:
        print(f"export: {exc}")
        return 2
    print(f"wrote {args.out}: {card.kind} {card.version}, threshold {card.threshold:g}")
    return 0
