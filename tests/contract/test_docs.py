"""Every relative link in README.md and docs/*.md points at a file that exists (and, for a link
into a Markdown page with ``#anchor``, at a heading that exists).

Links are Markdown's ``[text](target)`` and ``![alt](target)`` outside code blocks and code spans;
http(s), mailto and anchor-only links are not checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.paths import REPO

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def links(text: str) -> list[str]:
    """The link targets of a Markdown text, code blocks and code spans left out."""
    text = _FENCE.sub("", text)
    # A code span inside a link's text (`[`x.py`](x.py)`) is blanked, not removed with its link.
    text = _CODE_SPAN.sub(lambda m: "`" + " " * (len(m.group(0)) - 2) + "`", text)
    return [m.group(1) for m in _LINK.finditer(text)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, formatting and punctuation dropped, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.replace("`", "").replace("*", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for m in _HEADING.finditer(text):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path) -> list[str]:
    """Every relative link of ``page`` whose file (or heading) does not exist, with the reason."""
    bad = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"(?i)(https?|mailto):", target):
            continue
        if target.startswith("#"):
            if page.suffix == ".md" and target[1:] not in anchors(page):
                bad.append(f"{target}: no heading {target} on this page")
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve()
        if not dest.exists():
            bad.append(f"{target}: no such file {dest}")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    return bad


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == []


def test_the_guides_exist_and_readme_stays_short() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    for command in ("make demo", "make test"):
        assert command in readme
    for page in ("operator-guide", "reference", "module", "iot-hub", "data-science", "synth", "front-end",
                 "testing", "technicians"):
        assert f"(docs/{page}.md)" in readme, page
        assert (REPO / "docs" / f"{page}.md").is_file(), page


def test_the_checker_catches_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("# Site calibration\n\ntext\n")
    (tmp_path / "docs" / "synth").mkdir()
    (tmp_path / "docs" / "synth" / "bearing.png").write_bytes(b"")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](there.md) [ok too](there.md#site-calibration) ![img](synth/bearing.png) [web](https://x.invalid/y)\n"
        "[anchor only](#page) [`code` in text](../docs/there.md) [bad own anchor](#nope)\n"
        "```\n[in a code block](nowhere.md)\n```\n"
        "`[in a code span](nowhere.md)`\n"
        "[broken](missing.md) ![broken image](docs/synth/bearing.png) [bad anchor](there.md#nothing)\n"
    )
    assert broken_links(page) == [
        "#nope: no heading #nope on this page",
        f"missing.md: no such file {tmp_path.resolve() / 'docs' / 'missing.md'}",
        f"docs/synth/bearing.png: no such file {tmp_path.resolve() / 'docs' / 'docs' / 'synth' / 'bearing.png'}",
        "there.md#nothing: no heading #nothing in there.md",
    ]


def test_architecture_names_only_files_that_exist() -> None:
    """docs/architecture.md is the reference the code is checked against: every module file it
    names in its tables exists, and every module file of the package appears in it."""
    text = (REPO / "docs" / "architecture.md").read_text()
    package = REPO / "modules" / "audioclassifier" / "audioclassifier"
    named = set(re.findall(r"`((?:(?:hub|web)/)?[a-z_]+\.py)`", text))
    assert named, "no file named"
    missing = sorted(n for n in named if not (package / n).is_file())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"
    files = {p.relative_to(package).as_posix() for p in package.rglob("*.py") if p.name != "__init__.py"}
    unnamed = sorted(files - named)
    assert not unnamed, f"module files docs/architecture.md does not place: {unnamed}"
