"""Register this package's open_clip model configs (``model_configs/*.json``) by name.

Why: open_clip looks models up by name in a process-global registry that only knows its bundled
configs; ``derm1m-tiny`` (and any future DermLIP config) must be added in every process that
creates a model, including each torchrun worker (see ``launch``).
"""

from __future__ import annotations

from pathlib import Path

import open_clip

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"

_registered = False


def register_model_configs() -> list[str]:
    """Add ``MODEL_CONFIG_DIR`` to open_clip's registry once per process; return the names added.

    Idempotent because ``open_clip.add_model_config`` appends the folder again on every call and
    rescans all folders.
    """
    global _registered
    names = sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))
    if not _registered:
        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _registered = True
    return names
