"""Load the concept, body-site and symptom vocabularies (``ontology/*.yaml``) into flat entries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Entry:
    """One canonical label and the phrases that mean it."""

    name: str
    phrases: tuple[str, ...]
    group: str = ""
    parent: str | None = None
    negated_name: str | None = None
    release: bool = True        # reported in the Derm1M-convention release column


def _read(path: str | Path, key: str) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"vocabulary {path} not found; check annotate.* paths in params.yaml")
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if key not in doc:
        raise PipelineError(f"{path}: expected a top-level {key!r} list")
    return doc[key]


def _entry(item: dict, **kw: object) -> Entry:
    name = str(item["name"]).strip()
    phrases = tuple(dict.fromkeys([name.lower(), *[str(s).strip().lower() for s in item.get("synonyms") or []]]))
    return Entry(name=name, phrases=phrases, negated_name=item.get("negated_name"), release=bool(item.get("release", True)),
                 **kw)


def load_concepts(path: str | Path) -> list[Entry]:
    return [_entry(c, group=c.get("group", "")) for c in _read(path, "concepts")]


def load_symptoms(path: str | Path) -> list[Entry]:
    return [_entry(s) for s in _read(path, "symptoms")]


def load_body_sites(path: str | Path) -> list[Entry]:
    out: list[Entry] = []

    def visit(items: list, parent: str | None) -> None:
        for item in items or []:
            out.append(_entry(item, parent=parent))
            visit(item.get("children") or [], str(item["name"]).strip())

    visit(_read(path, "sites"), None)
    return out
