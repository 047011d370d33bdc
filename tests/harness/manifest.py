"""The project's Dockerfiles, parsed the way the manifest and image tests read them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["dockerfile"]


def dockerfile(path: Path) -> dict[str, Any]:
    """The instructions this project's Dockerfiles use, parsed (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out: dict[str, Any] = {"from": [], "copy": [], "env": {}, "run": [], "user": None, "volume": None,
                           "entrypoint": None, "healthcheck": None}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "FROM":
            out["from"].append(rest)
        elif op == "COPY":
            args = [a for a in rest.split() if not a.startswith("--")]
            out["copy"].append((args[:-1], args[-1]))
        elif op == "ENV":
            out["env"].update(dict(kv.split("=", 1) for kv in rest.split()))
        elif op == "RUN":
            out["run"].append(rest)
        elif op == "USER":
            out["user"] = rest
        elif op == "VOLUME":
            (out["volume"],) = json.loads(rest)
        elif op == "ENTRYPOINT":
            out["entrypoint"] = json.loads(rest)
        elif op == "HEALTHCHECK":
            out["healthcheck"] = rest
    return out
