"""Where the team's dataset cache is, for tests and benches that use real data when it is there."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find_datasets(holding: str = "MNIST/raw") -> Path | None:
    """The dataset cache that has the folder `holding`: $ZTG_DATA_DIR, else ../shared/datasets."""
    for candidate in (os.environ.get("ZTG_DATA_DIR"), ROOT.parent / "shared" / "datasets"):
        if candidate and (Path(candidate) / holding).is_dir():
            return Path(candidate)
    return None
