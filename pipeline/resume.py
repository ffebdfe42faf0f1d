"""Resume areas: completed chunks of a long stage, kept outside its DVC out until it finishes.

Why outside the out: DVC deletes a stage's outs before running it, so work saved inside them
would never survive to the rerun. ``params.yaml: resume.dir`` (``auto``: ``.resume/`` beside the
stage's out folder, e.g. ``data/.resume/dedup``) holds one file per completed chunk, named by a
fingerprint of everything that decides the chunk's result (input file SHA-256s and paths, the
method and its options, a code version), so a chunk saved under other inputs or older code is
never reused: it simply has another name. The area is deleted when the stage completes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.tables import atomic_path

DEFAULTS = {"dir": "auto", "hash_chunk": 4096}


def resume_config(params: dict) -> dict:
    """``params.yaml: resume`` with defaults (a params file from before it existed gets them)."""
    cfg = dict(DEFAULTS)
    cfg.update(params.get("resume") or {})
    if not isinstance(cfg["dir"], str) or not cfg["dir"]:
        raise ConfigError(f"params.yaml: resume.dir must be a folder or auto, got {cfg['dir']!r}")
    if isinstance(cfg["hash_chunk"], bool) or not isinstance(cfg["hash_chunk"], int) or cfg["hash_chunk"] < 1:
        raise ConfigError(f"params.yaml: resume.hash_chunk must be an integer >= 1, got {cfg['hash_chunk']!r}")
    return cfg


def resume_area(params: dict, stage: str, out: str | Path) -> Path:
    """The stage's resume folder: ``<resume.dir>/<stage>``, or ``.resume/<stage>`` beside ``out``."""
    base = resume_config(params)["dir"]
    root = Path(out).parent / ".resume" if base == "auto" else Path(base)
    return root / stage


def fingerprint(*parts: object) -> str:
    """SHA-256 of the JSON of ``parts``: the name a chunk's result is saved under."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ChunkStore:
    """Completed chunk results (JSON-able lists), one atomically written file per fingerprint."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def load(self, key: str, length: int) -> list | None:
        """The saved result of chunk ``key`` if there is one of ``length`` items, else None."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("key") != key or not isinstance(doc.get("items"), list):
            return None
        return doc["items"] if len(doc["items"]) == length else None

    def save(self, key: str, items: list) -> None:
        with atomic_path(self._path(key)) as tmp:
            tmp.write_text(json.dumps({"key": key, "items": items}, separators=(",", ":")), encoding="utf-8")

    def clear(self) -> None:
        """Delete the area (the stage completed); an emptied ``.resume`` parent goes too."""
        shutil.rmtree(self.root, ignore_errors=True)
        parent = self.root.parent
        if parent.name == ".resume" and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
