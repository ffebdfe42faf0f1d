"""What every benchmark prints and checks first: the machine it ran on, and the shared data."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def machine() -> str:
    """'N CPUs, Python X, platform': the line a figure is meaningless without."""
    return f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}"


def require_shared_corpus(shared: Path) -> None:
    """Exit with one line when the shared reference images beside the checkout are absent."""
    if not (shared / "corpus").exists():
        sys.exit(f"no {shared / 'corpus'}: this benchmark needs the shared reference images")


def table(title: str, rows: list[tuple[str, str]]) -> None:
    """Print a titled two-column table (a benchmark's figures, aligned for pasting into a note)."""
    width = max(len(k) for k, _ in rows)
    print(f"\n## {title}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
