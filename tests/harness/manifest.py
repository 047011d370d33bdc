"""The project's Dockerfiles, parsed the way the manifest and image tests read them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["dockerfile"]


def dockerfile(path: Path) -> dict[str, Any]:
    """The instructions this project's Dockerfiles use, parsed (continuation lines joined).

    ``ARG`` defaults are substituted into later lines (``${NAME}``). ``copy`` lists the copies from
    the build context as ``(sources, dest)``; ``copy_from`` the copies from an earlier stage as
    ``(stage, sources, dest)``; ``from`` every stage's base (``AS name`` dropped), ``stages`` their names.
    """
    text = re.sub(r"\\\n", " ", path.read_text())
    out: dict[str, Any] = {"from": [], "stages": [], "arg": {}, "copy": [], "copy_from": [], "env": {}, "run": [],
                           "user": None, "volume": None, "entrypoint": None, "healthcheck": None}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        for name, value in out["arg"].items():
            rest = rest.replace("${" + name + "}", value)
        if op == "FROM":
            words = rest.split()
            out["from"].append(words[0])
            out["stages"].append(words[2] if len(words) == 3 and words[1].lower() == "as" else None)
        elif op == "ARG":
            name, _, value = rest.partition("=")
            out["arg"][name] = value
        elif op == "COPY":
            flags = dict(a[2:].split("=", 1) for a in rest.split() if a.startswith("--") and "=" in a)
            args = [a for a in rest.split() if not a.startswith("--")]
            if "from" in flags:
                out["copy_from"].append((flags["from"], args[:-1], args[-1]))
            else:
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
