"""Register this package's open_clip model configs (``model_configs/*.json``) by name.

Why: open_clip looks models up by name in a process-global registry that only knows its bundled
configs; ``derm1m-tiny`` (and any future DermLIP config) must be added in every process that
creates a model, including each torchrun worker (see ``launch``).
"""

from __future__ import annotations

import os
from pathlib import Path

import open_clip

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
# A folder of generated configs (the PanDerm profile's); set in the environment so torchrun's
# fresh worker processes register it too.
EXTRA_CONFIGS_ENV = "DERM1M_EXTRA_MODEL_CONFIGS"

_registered: set[str] = set()


def register_model_configs() -> list[str]:
    """Add ``MODEL_CONFIG_DIR`` (and ``$DERM1M_EXTRA_MODEL_CONFIGS``) to open_clip's registry.

    Once per folder and process, because ``open_clip.add_model_config`` appends the folder
    again on every call and rescans all folders. Returns the bundled config names.
    """
    names = sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json"))
    folders = [MODEL_CONFIG_DIR]
    if os.environ.get(EXTRA_CONFIGS_ENV):
        folders.append(Path(os.environ[EXTRA_CONFIGS_ENV]))
    for folder in folders:
        if str(folder) not in _registered or folder != MODEL_CONFIG_DIR:
            open_clip.add_model_config(folder)  # generated configs may change: always rescan those
            _registered.add(str(folder))
    return names
