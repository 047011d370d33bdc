"""Check that every runtime pin installs from a wheel on a target platform, before building the image.

    python tools/check_wheels.py                    # linux aarch64 (arm64v8 image), CPython 3.11
    python tools/check_wheels.py --arch x86_64

pip matches one ``--platform`` tag at a time, so a wheel tagged ``manylinux_2_28_aarch64`` is not
found when only ``manylinux_2_35_aarch64`` is given: every manylinux tag up to the image's glibc
(Debian bookworm: 2.36) is passed. Pins published as source only (paho-mqtt 1.6.1, pure Python)
are listed and checked as sdists. Exits 1, naming each pin that has neither.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[1] / "modules" / "audioclassifier" / "requirements.txt"
#: Pins with no wheel on PyPI at all: pure Python, built in the image (from a pinned build backend).
SDIST_ONLY = {"paho-mqtt"}


def pins(path: Path) -> list[str]:
    """``name==version`` lines of a requirements file."""
    return [ln.split("#")[0].strip() for ln in path.read_text().splitlines() if re.match(r"^[A-Za-z0-9]", ln)]


def platform_tags(arch: str, glibc_minor: int) -> list[str]:
    """manylinux tags a glibc 2.<glibc_minor> system accepts, newest first, plus the legacy aliases."""
    tags = [f"manylinux_2_{m}_{arch}" for m in range(glibc_minor, 16, -1)]
    return [*tags, f"manylinux2014_{arch}"]


def download(pin: str, *, dest: str, platforms: list[str], python: str, binary: bool) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", dest,
           "--disable-pip-version-check"]
    if binary:
        cmd += ["--only-binary=:all:", "--implementation", "cp", "--python-version", python,
                "--abi", f"cp{python.replace('.', '')}", "--abi", "abi3", "--abi", "none"]
        for tag in platforms:
            cmd += ["--platform", tag]
    else:
        cmd += ["--no-binary=:all:"]
    return subprocess.run([*cmd, pin], capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="aarch64", choices=("aarch64", "x86_64"))
    ap.add_argument("--python", default="3.11", help="CPython version of the image (default 3.11)")
    ap.add_argument("--glibc", type=int, default=36, help="glibc 2.N of the image (default 36: Debian bookworm)")
    ap.add_argument("--requirements", type=Path, default=REQUIREMENTS)
    args = ap.parse_args(argv)
    platforms = platform_tags(args.arch, args.glibc)
    missing = []
    with tempfile.TemporaryDirectory() as dest:
        for pin in pins(args.requirements):
            name = re.split(r"[=<>!~ ]", pin, maxsplit=1)[0].lower()
            sdist = name in SDIST_ONLY
            res = download(pin, dest=dest, platforms=platforms, python=args.python, binary=not sdist)
            print(f"{'ok ' if res.returncode == 0 else 'NO '} {pin} ({'sdist, pure Python' if sdist else 'wheel'})")
            if res.returncode != 0:
                missing.append(pin)
                print("    " + (res.stderr.strip().splitlines() or ["?"])[-1], file=sys.stderr)
    if missing:
        print(f"{len(missing)} pin(s) not installable on linux/{args.arch}: {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"all pins installable on linux/{args.arch}, CPython {args.python}, glibc 2.{args.glibc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
