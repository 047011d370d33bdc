"""Render the constraints tables into docs/reference.md (between ``<!-- table:NAME -->`` markers).

    python tools/render_docs.py           # rewrite the tables in place
    python tools/render_docs.py --check   # exit 1 if the docs differ from the code (tests do this)

Blocks: ``settings`` (the twin's desired properties), one per direct method with arguments
(``captureClip``, ``calibrate``, ``learn``, ``feedback``), ``options`` (start-up options that are not
twin settings).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from audioclassifier.constraints import METHODS, OPTIONS, SETTINGS, markdown_table

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"
BLOCK = re.compile(r"(<!-- table:(\w+) -->\n)(.*?)(<!-- /table -->)", re.S)


def tables() -> dict[str, str]:
    out = {"settings": markdown_table(SETTINGS), "options": markdown_table(OPTIONS, first="Option")}
    out.update({name: markdown_table(table, first="Argument") for name, table in METHODS.items() if table})
    return out


def render(text: str) -> str:
    """``text`` with every marked block replaced by the table the code holds."""
    known = tables()

    def fill(m: re.Match[str]) -> str:
        name = m.group(2)
        if name not in known:
            raise KeyError(f"docs name an unknown table {name!r}; known: {', '.join(known)}")
        return m.group(1) + known[name] + "\n" + m.group(4)

    return BLOCK.sub(fill, text)


def main(argv: list[str]) -> int:
    text = REFERENCE.read_text()
    new = render(text)
    if "--check" in argv:
        if new != text:
            print(f"{REFERENCE} differs from the constraints table: run python tools/render_docs.py", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
