"""Where things are: the repository, the module's folder, the shared real recordings."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "modules" / "audioclassifier"
#: ../shared/data, the real recordings (read in place, never copied into the repository).
SHARED_DATA = Path(os.environ.get("AUSCULT_SHARED_DATA", REPO.parent / "shared" / "data"))
