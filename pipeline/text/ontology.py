"""The condition ontology as a tree of named nodes, loadable from our YAML, our OWL or Derm1M's JSON.

One in-memory model serves every format: the YAML is what people edit, the OWL (built with
owlready2) is what the pipeline ships and tools like Protégé open, and Derm1M's released
``ontology.json`` can be used as-is so labels come out in Derm1M's own vocabulary.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.errors import PipelineError

OWL_IRI = "http://derm1m-pipeline.org/ontology/dermatology.owl"


@dataclass
class Node:
    name: str
    parent: str | None
    synonyms: list[str] = field(default_factory=list)
    abbreviations: list[str] = field(default_factory=list)
    icd10: str | None = None


class Ontology:
    """A rooted tree of condition nodes keyed by (lowercase) name, children in file order."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.nodes: dict[str, Node] = {root: Node(root, None)}
        self.children: dict[str, list[str]] = {root: []}

    # -- building ---------------------------------------------------------------------------
    def add(self, node: Node) -> None:
        if node.name in self.nodes:
            raise PipelineError(f"ontology: node {node.name!r} defined twice; names must be unique")
        if node.parent not in self.nodes:
            raise PipelineError(f"ontology: parent {node.parent!r} of {node.name!r} is not defined before it")
        self.nodes[node.name] = node
        self.children[node.name] = []
        self.children[node.parent].append(node.name)

    # -- queries ----------------------------------------------------------------------------
    def path(self, name: str) -> list[str]:
        """Names from the level-1 ancestor down to ``name`` (root excluded)."""
        out = []
        node = self.nodes[name]
        while node.parent is not None:
            out.append(node.name)
            node = self.nodes[node.parent]
        return out[::-1]

    def level(self, name: str) -> int:
        return len(self.path(name))

    def walk(self) -> Iterator[Node]:
        """Depth-first, in file order, root excluded."""
        stack = list(reversed(self.children[self.root]))
        while stack:
            name = stack.pop()
            yield self.nodes[name]
            stack.extend(reversed(self.children[name]))

    def terms(self) -> Iterator[tuple[str, str, bool]]:
        """(node name, term, is_abbreviation) for every name, synonym and abbreviation."""
        for node in self.walk():
            yield node.name, node.name, False
            for s in node.synonyms:
                yield node.name, s, False
            for a in node.abbreviations:
                yield node.name, a, True

    def lookup(self, term: str) -> list[str]:
        """Nodes whose name or synonym equals ``term`` (case-insensitive) or abbreviation (exact)."""
        t = term.strip()
        return sorted({n for n, x, abbr in self.terms() if (x == t if abbr else x.lower() == t.lower())})

    def check(self) -> list[str]:
        """Problems: cycles/unreachable nodes, synonyms claimed by two nodes (unless ambiguous)."""
        problems = []
        reachable = {n.name for n in self.walk()} | {self.root}
        for name in self.nodes:
            if name not in reachable:
                problems.append(f"node {name!r} is not reachable from the root {self.root!r}")
        claimed: dict[str, set[str]] = {}
        for name, term, abbr in self.terms():
            claimed.setdefault(term if abbr else term.lower(), set()).add(name)
        for term, names in sorted(claimed.items()):
            if len(names) > 1:
                problems.append(f"term {term!r} is claimed by {len(names)} nodes: {sorted(names)}")
        return problems

    # -- formats ----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Ontology:
        """Load by file type: ``.yaml``/``.yml`` (ours), ``.owl`` (ours, built), ``.json`` (Derm1M)."""
        path = Path(path)
        if not path.exists():
            raise PipelineError(f"ontology file {path} not found; run `derm1m ontology build` (or dvc repro)")
        suffix = path.suffix.lower()
        if suffix in (".yaml", ".yml"):
            return cls.from_yaml(path)
        if suffix == ".owl":
            return cls.from_owl(path)
        if suffix == ".json":
            return cls.from_derm1m_json(path)
        raise PipelineError(f"{path}: unknown ontology format {suffix!r}; use .yaml, .owl or Derm1M's .json")

    @classmethod
    def from_yaml(cls, path: Path) -> Ontology:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        onto = cls(str(doc.get("root", "skin condition")).lower())

        def visit(items: list, parent: str) -> None:
            for item in items or []:
                name = str(item["name"]).strip().lower()
                onto.add(Node(name, parent,
                              [str(s).strip().lower() for s in item.get("synonyms") or []],
                              [str(a).strip() for a in item.get("abbreviations") or []],
                              item.get("icd10")))
                visit(item.get("children") or [], name)

        visit(doc.get("nodes") or [], onto.root)
        return onto

    @classmethod
    def from_derm1m_json(cls, path: Path) -> Ontology:
        """Derm1M's ``{"root": [children], "node": [children], ...}``.

        Node names are kept whole and lowercased, because Derm1M's labels are exactly those
        strings (``"candidiasis, tinea"`` is one node); comma-separated parts become synonyms.
        """
        data = json.loads(path.read_text(encoding="utf-8"))
        if "root" not in data:
            raise PipelineError(f"{path}: not a Derm1M ontology.json (no 'root' key)")
        onto = cls("root")
        # The file is a DAG (a node may be listed under two parents); keep the deepest parent,
        # which is the path Derm1M's own hierarchical labels use.
        parents: dict[str, list[str]] = {}
        raw_name: dict[str, str] = {}
        for parent, kids in data.items():
            for kid in kids:
                key = kid.strip().lower()
                raw_name.setdefault(key, kid)
                parents.setdefault(key, []).append(parent.strip().lower())
        depth: dict[str, int] = {"root": 0}

        def depth_of(name: str, trail: frozenset = frozenset()) -> int:
            if name not in depth:
                if name in trail or name not in parents:
                    raise PipelineError(f"{path}: node {name!r} is in a cycle or unreachable from root")
                depth[name] = 1 + max(depth_of(p, trail | {name}) for p in parents[name])
            return depth[name]

        order = sorted(parents, key=lambda n: (depth_of(n), list(parents).index(n)))
        for name in order:
            parent = max(parents[name], key=lambda p: (depth_of(p), -parents[name].index(p)))
            parts = [x.strip() for x in name.split(",") if x.strip()]
            syns = [x for x in parts if x != name] if len(parts) > 1 else []
            onto.add(Node(name, parent, syns))
        return onto

    def to_derm1m_json(self) -> dict[str, list[str]]:
        out = {"root": list(self.children[self.root])}
        for node in self.walk():
            out[node.name] = list(self.children[node.name])
        return out

    def to_owl(self, path: str | Path) -> None:
        """Write OWL (RDF/XML) with owlready2: one class per node, subclass = child-of."""
        import owlready2

        world = owlready2.World()
        onto = world.get_ontology(OWL_IRI + "#")
        with onto:
            synonym = types.new_class("synonym", (owlready2.AnnotationProperty,))
            abbreviation = types.new_class("abbreviation", (owlready2.AnnotationProperty,))
            icd10 = types.new_class("icd10", (owlready2.AnnotationProperty,))
            slugs: dict[str, object] = {}
            used: set[str] = set()

            def make(name: str, parent_cls: object) -> object:
                base = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "node"
                slug, k = base, 1
                while slug.lower() in used:
                    k += 1
                    slug = f"{base}_{k}"
                used.add(slug.lower())
                cls = types.new_class(slug, (parent_cls,))
                cls.label = [name]
                return cls

            slugs[self.root] = make(self.root, owlready2.Thing)
            for node in self.walk():
                cls = make(node.name, slugs[node.parent])
                # Append one value at a time: owlready2 applies a list assignment as a set
                # difference, which would order the triples by string hash (non-reproducible).
                for value in node.synonyms:
                    cls.synonym.append(value)
                for value in node.abbreviations:
                    cls.abbreviation.append(value)
                if node.icd10:
                    cls.icd10.append(node.icd10)
                slugs[node.name] = cls
            del synonym, abbreviation, icd10
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        onto.save(file=str(path), format="rdfxml")

    @classmethod
    def from_owl(cls, path: Path) -> Ontology:
        import owlready2

        world = owlready2.World()
        onto = world.get_ontology(path.resolve().as_uri()).load()
        owl_classes = list(onto.classes())
        if not owl_classes:
            raise PipelineError(f"{path}: OWL file has no classes")
        label = {c: (c.label[0] if c.label else c.name) for c in owl_classes}
        parent_of = {}
        for c in owl_classes:
            parents = [p for p in c.is_a if p in label]
            parent_of[c] = parents[0] if parents else None
        roots = [c for c in owl_classes if parent_of[c] is None]
        if len(roots) != 1:
            raise PipelineError(f"{path}: expected one root class, found {[label[r] for r in roots]}")
        result = cls(str(label[roots[0]]))
        kids: dict[object, list] = {}
        for c in owl_classes:
            if parent_of[c] is not None:
                kids.setdefault(parent_of[c], []).append(c)
        order = {c: i for i, c in enumerate(owl_classes)}

        def prop(c: object, name: str) -> list[str]:
            return [str(v) for v in getattr(c, name, [])]

        stack = [roots[0]]
        while stack:
            c = stack.pop()
            for child in sorted(kids.get(c, []), key=order.get):
                icd = prop(child, "icd10")
                result.add(Node(str(label[child]), str(label[c]), prop(child, "synonym"), prop(child, "abbreviation"),
                                icd[0] if icd else None))
                stack.append(child)
        return result
