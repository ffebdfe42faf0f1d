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
    # What the release column writes for this entry: its own name when released, else the
    # nearest released ancestor's (palm -> hand), else None (a grouping name such as trunk).
    release_as: str | None = None


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
    release = bool(item.get("release", True))
    kw.setdefault("release_as", name if release else None)
    return Entry(name=name, phrases=phrases, negated_name=item.get("negated_name"), release=release, **kw)


def load_concepts(path: str | Path) -> list[Entry]:
    return [_entry(c, group=c.get("group", "")) for c in _read(path, "concepts")]


def load_concept_templates(path: str | Path) -> list[tuple[str, tuple[str, ...]]]:
    """(lowercase sentence, concepts) pairs: fixed template sentences of public datasets that
    stand for a fixed concept set (``templates:`` in concepts.yaml; optional)."""
    path = Path(path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {} if path.exists() else {}
    known = {str(c["name"]).strip() for c in doc.get("concepts") or []}
    out = []
    for item in doc.get("templates") or []:
        concepts = tuple(str(c).strip() for c in item.get("concepts") or [])
        unknown = [c for c in concepts if c not in known]
        if unknown:
            raise PipelineError(f"{path}: template {item.get('phrase')!r} names unknown concepts {unknown}")
        out.append((" ".join(str(item["phrase"]).lower().split()), concepts))
    return out


def load_symptoms(path: str | Path) -> list[Entry]:
    return [_entry(s) for s in _read(path, "symptoms")]


def load_body_sites(path: str | Path) -> list[Entry]:
    """The site tree, flattened. Each entry's ``release_as`` is the name Derm1M's
    ``body_location`` column uses for it: its own, the nearest released ancestor's for a
    sub-site the release does not name (palm -> hand, toe -> foot), or None for a region or
    grouping name (trunk, upper limb, mucosa) that the release never writes."""
    out: list[Entry] = []

    def visit(items: list, parent: str | None, released_ancestor: str | None) -> None:
        for item in items or []:
            name = str(item["name"]).strip()
            released = bool(item.get("release", True))
            out.append(_entry(item, parent=parent, release_as=name if released else released_ancestor))
            visit(item.get("children") or [], name, name if released else released_ancestor)

    visit(_read(path, "sites"), None, None)
    return out
