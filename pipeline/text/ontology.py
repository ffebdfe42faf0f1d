"""The condition ontology as a tree of named nodes, loadable from our YAML, our OWL or Derm1M's JSON.

One in-memory model serves every format: the YAML is what people edit, the OWL (built with
owlready2) is what the pipeline ships and tools like Protégé open, and Derm1M's released
``ontology.json`` can be used as-is so labels come out in Derm1M's own vocabulary.
"""

from __future__ import annotations

import functools
import json
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.errors import PipelineError

OWL_IRI = "http://derm1m-pipeline.org/ontology/dermatology.owl"
PROJECT_YAML = Path(__file__).resolve().parents[2] / "ontology" / "conditions.yaml"


# Qualifiers that some released node names carry after a comma ("Chronic dermatitis, NOS");
# they are not names of anything, so resolution ignores them.
QUALIFIERS = {"nos", "not otherwise specified", "unspecified"}


@dataclass
class Node:
    """One class. ``id`` is unique; ``name`` is the preferred label and may repeat in a file
    whose tree reuses a grouping name under two parents (Derm1M's "non-melanocytic" sits under
    both "benign" and "malignant"): such a copy gets the id ``"<parent id> > <name>"``.

    ``aliases`` resolve in :meth:`Ontology.lookup` (dataset labels, name fragments) but are
    never matched in free text, because they are not safe as words in a caption. ``signs`` are
    phrases that point to the condition without naming it (a causative organism, a
    pathognomonic finding: "herald patch", "Sarcoptes scabiei"); the annotator uses them only
    when a caption names no condition.
    """

    name: str
    parent: str | None
    synonyms: list[str] = field(default_factory=list)
    abbreviations: list[str] = field(default_factory=list)
    icd10: str | None = None
    id: str = ""
    aliases: list[str] = field(default_factory=list)
    kind_of: str | None = None
    signs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.id = self.id or self.name


class Ontology:
    """A rooted tree of condition nodes keyed by id (for our files: the lowercase name)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.nodes: dict[str, Node] = {root: Node(root, None)}
        self.children: dict[str, list[str]] = {root: []}
        # Terms deliberately claimed by more than one node ("herpes", "non-melanocytic").
        self.ambiguous: set[str] = set()
        self._index: dict[str, list[str]] | None = None
        self._paths: dict[str, list[str]] = {}

    # -- building ---------------------------------------------------------------------------
    def add(self, node: Node) -> None:
        if node.id in self.nodes:
            raise PipelineError(f"ontology: node {node.id!r} defined twice; names must be unique")
        if node.parent not in self.nodes:
            raise PipelineError(f"ontology: parent {node.parent!r} of {node.id!r} is not defined before it")
        self.nodes[node.id] = node
        self.children[node.id] = []
        self.children[node.parent].append(node.id)
        self._index = None
        self._paths.clear()

    def unique_id(self, name: str, parent: str) -> str:
        """``name`` when free, else ``"<parent> > <name>"`` (a repeated grouping name)."""
        return name if name not in self.nodes else f"{parent} > {name}"

    # -- queries ----------------------------------------------------------------------------
    def path(self, node_id: str) -> list[str]:
        """Ids from the level-1 ancestor down to ``node_id`` (root excluded). Do not mutate."""
        cached = self._paths.get(node_id)
        if cached is None:
            out = []
            node = self.nodes[node_id]
            while node.parent is not None:
                out.append(node.id)
                node = self.nodes[node.parent]
            cached = self._paths[node_id] = out[::-1]
        return cached

    def name(self, node_id: str) -> str:
        return self.nodes[node_id].name

    def path_names(self, node_id: str) -> list[str]:
        """The path as labels, as Derm1M's ``hierarchical_disease_label`` writes it."""
        return [self.nodes[i].name for i in self.path(node_id)]

    def level(self, node_id: str) -> int:
        return len(self.path(node_id))

    def walk(self) -> Iterator[Node]:
        """Depth-first, in file order, root excluded."""
        stack = list(reversed(self.children[self.root]))
        while stack:
            name = stack.pop()
            yield self.nodes[name]
            stack.extend(reversed(self.children[name]))

    def terms(self, aliases: bool = False) -> Iterator[tuple[str, str, bool]]:
        """(node id, term, is_abbreviation) for every name, synonym and abbreviation.

        With ``aliases=True`` the lookup-only aliases are included too (not for text matching).
        """
        for node in self.walk():
            yield node.id, node.name, False
            for s in node.synonyms:
                yield node.id, s, False
            for a in node.abbreviations:
                yield node.id, a, True
            if aliases:
                for a in node.aliases:
                    yield node.id, a, False

    def _lookup_index(self) -> dict[str, list[str]]:
        if self._index is None:
            index: dict[str, list[str]] = {}
            for node_id, term, abbr in self.terms(aliases=True):
                key = term if abbr else fold_term(term)
                if node_id not in index.setdefault(key, []):
                    index[key].append(node_id)
            self._index = index
        return self._index

    def lookup(self, term: str) -> list[str]:
        """Nodes whose name, synonym or alias equals ``term`` (case, hyphen and spacing folded),
        or whose abbreviation equals it exactly (case-sensitive: "SCC" is not "scc")."""
        index = self._lookup_index()
        return sorted(set(index.get(term.strip(), [])) | set(index.get(fold_term(term), [])))

    def resolve(self, label: str) -> list[str]:
        """Nodes for a label as datasets write it, Derm1M's comma-joined names included.

        Tries the whole label, then (for "A, B" names) each comma part, ignoring qualifiers
        such as "NOS"; the first part that resolves wins, so "Malignant melanoma, melanoma"
        gives melanoma and "Chronic dermatitis, NOS" gives chronic dermatitis. Each is tried
        as written first, then in singular ("Knuckle pads", "Beau's lines"), so a node named
        in the plural keeps its own name.
        """
        for candidate in [label, *(p for p in label.split(",") if p.strip() and fold_term(p) not in QUALIFIERS)]:
            for form in [candidate, *singular_forms(fold_term(candidate))]:
                found = self.lookup(form)
                if found:
                    return found
        return []

    def parse_labels(self, text: str) -> list[str]:
        """Node ids named by a Derm1M-style ``disease_label`` ("candidiasis, tinea").

        Node names may themselves contain commas ("nail diseases, nail disease"), so the comma
        parts are grouped greedily, longest run of parts that is one known name first.
        """
        parts = [p.strip() for p in text.split(",")]
        out: list[str] = []
        i = 0
        while i < len(parts):
            for j in range(len(parts), i, -1):
                found = self.lookup(", ".join(parts[i:j]))
                if found:
                    out.extend(x for x in found if x not in out)
                    i = j
                    break
            else:
                i += 1
        return out

    def check(self) -> list[str]:
        """Problems: cycles/unreachable nodes, terms claimed by two nodes (unless listed ambiguous)."""
        problems = []
        reachable = {n.id for n in self.walk()} | {self.root}
        for node_id in self.nodes:
            if node_id not in reachable:
                problems.append(f"node {node_id!r} is not reachable from the root {self.root!r}")
        claimed: dict[str, set[str]] = {}
        for node_id, term, abbr in self.terms(aliases=True):
            claimed.setdefault(term if abbr else fold_term(term), set()).add(node_id)
        for term, ids in sorted(claimed.items()):
            if len(ids) > 1 and term not in self.ambiguous:
                problems.append(f"term {term!r} is claimed by {len(ids)} nodes: {sorted(ids)} "
                                f"(remove it from all but one, or list it under `ambiguous:`)")
        for node in self.walk():
            if node.kind_of is not None and node.kind_of not in self.nodes:
                problems.append(f"node {node.id!r}: kind_of {node.kind_of!r} is not a node")
            elif node.kind_of is not None and node.id in self.path(node.kind_of):
                problems.append(f"node {node.id!r}: kind_of {node.kind_of!r} is its own descendant")
        for term in sorted(self.ambiguous - {t for t, ids in claimed.items() if len(ids) > 1}):
            problems.append(f"term {term!r} is listed as ambiguous but is claimed by fewer than two nodes")
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
            return cls.from_derm1m_json(path, reference=project_ontology())
        raise PipelineError(f"{path}: unknown ontology format {suffix!r}; use .yaml, .owl or Derm1M's .json")

    @classmethod
    def from_yaml(cls, path: Path) -> Ontology:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        onto = cls(str(doc.get("root", "skin condition")).lower())
        onto.ambiguous = {fold_term(t) for t in doc.get("ambiguous") or []}

        def words(item: dict, key: str) -> list[str]:
            return [str(s).strip().lower() for s in item.get(key) or []]

        def visit(items: list, parent: str) -> None:
            for item in items or []:
                name = str(item["name"]).strip().lower()
                onto.add(Node(name, parent, words(item, "synonyms"), [str(a).strip() for a in item.get("abbreviations") or []],
                              item.get("icd10"), aliases=words(item, "aliases"),
                              kind_of=str(item["kind_of"]).strip().lower() if item.get("kind_of") else None,
                              signs=words(item, "signs")))
                visit(item.get("children") or [], name)

        visit(doc.get("nodes") or [], onto.root)
        return onto

    @classmethod
    def from_derm1m_json(cls, path: Path, reference: Ontology | None = None) -> Ontology:
        """Derm1M's ``{"root": [children], "node": [children], ...}``.

        Node names are kept whole and lowercased, because Derm1M's labels are exactly those
        strings (``"candidiasis, tinea"`` is one node); comma-separated parts become synonyms.

        The file is keyed by name, so a grouping listed under two parents ("melanocytic" and
        "non-melanocytic", under both "benign" and "malignant") arrives as one merged list of
        children. Such a node gets one copy per parent, and each child goes to the copy whose
        parent lies on the child's path in ``reference`` (our ontology: basal cell carcinoma is
        malignant, dermatofibroma benign); without a reference, or when it does not know the
        child, the child goes to the first parent's copy.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PipelineError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or "root" not in data:
            raise PipelineError(f"{path}: not a Derm1M ontology.json (expected an object with a 'root' key)")
        onto = cls("root")
        parents: dict[str, list[str]] = {}
        kids_of: dict[str, list[str]] = {}
        for parent, kids in data.items():
            if not isinstance(kids, list):
                raise PipelineError(f"{path}: children of {parent!r} must be a list of names")
            pkey = parent.strip().lower()
            for kid in kids:
                key = str(kid).strip().lower()
                if pkey not in parents.setdefault(key, []):
                    parents[key].append(pkey)
                if key not in kids_of.setdefault(pkey, []):
                    kids_of[pkey].append(key)
        if "root" in parents:
            raise PipelineError(f"{path}: 'root' is listed as a child of {parents['root']}; the file has a cycle")

        def ref_path(name: str) -> set[str]:
            if reference is None:
                return set()
            ids = reference.resolve(name)
            return {fold_term(reference.name(a)) for i in ids[:1] for a in reference.path(i)}

        def home_copy(kid: str, copies: list[str]) -> str:
            """Which parent's copy of a shared grouping a child belongs under."""
            if reference is not None:
                on_path = {fold_term(reference.name(a)) for i in reference.resolve(kid)[:1] for a in reference.path(i)}
                for copy_parent in copies:
                    if fold_term(copy_parent) in on_path:
                        return copy_parent
            return copies[0]

        def visit(name: str, node_id: str, parent_name: str, trail: tuple[str, ...]) -> None:
            copies = parents.get(name, [])
            for kid in kids_of.get(name, []):
                if kid in trail:
                    raise PipelineError(f"{path}: cycle {' -> '.join([*trail, kid])}")
                if len(copies) > 1 and home_copy(kid, copies) != parent_name:
                    continue
                parts = [x.strip() for x in kid.split(",") if x.strip()]
                syns = list(dict.fromkeys(x for x in parts if x != kid)) if len(parts) > 1 else []
                node = Node(kid, node_id, syns, id=onto.unique_id(kid, node_id))
                if len(parents[kid]) > 1:
                    onto.ambiguous.add(fold_term(kid))   # the same grouping under each parent
                onto.add(node)
                visit(kid, node.id, name, (*trail, kid))

        visit("root", "root", "", ("root",))
        placed = {n.name for n in onto.nodes.values()}
        for name in parents:
            if name not in placed:
                raise PipelineError(f"{path}: node {name!r} is not reachable from 'root'")
        return onto

    def to_derm1m_json(self) -> dict[str, list[str]]:
        """Derm1M's parent -> children lists, keyed by name (a repeated grouping name merges)."""
        out: dict[str, list[str]] = {"root": [self.name(c) for c in self.children[self.root]]}
        for node in self.walk():
            kids = out.setdefault(node.name, [])
            kids.extend(self.name(c) for c in self.children[node.id] if self.name(c) not in kids)
        return out

    def to_owl(self, path: str | Path) -> None:
        """Write OWL (RDF/XML) with owlready2: one class per node, subclass = child-of."""
        import owlready2

        world = owlready2.World()
        onto = world.get_ontology(OWL_IRI + "#")
        with onto:
            props = {key: types.new_class(key, (owlready2.AnnotationProperty,))
                     for key in ("synonym", "abbreviation", "icd10", "alias", "ambiguous_term", "kind_of", "sign")}
            classes: dict[str, object] = {}
            used: set[str] = set()

            def make(node_id: str, name: str, parent_cls: object) -> object:
                base = re.sub(r"[^A-Za-z0-9]+", "_", node_id).strip("_") or "node"
                slug, k = base, 1
                while slug.lower() in used:
                    k += 1
                    slug = f"{base}_{k}"
                used.add(slug.lower())
                cls = types.new_class(slug, (parent_cls,))
                cls.label = [name]
                return cls

            classes[self.root] = make(self.root, self.root, owlready2.Thing)
            for term in sorted(self.ambiguous):
                classes[self.root].ambiguous_term.append(term)
            for node in self.walk():
                cls = make(node.id, node.name, classes[node.parent])
                # Append one value at a time: owlready2 applies a list assignment as a set
                # difference, which would order the triples by string hash (non-reproducible).
                for key, values in (("synonym", node.synonyms), ("abbreviation", node.abbreviations),
                                    ("alias", node.aliases), ("icd10", [node.icd10] if node.icd10 else []),
                                    ("kind_of", [node.kind_of] if node.kind_of else []), ("sign", node.signs)):
                    for value in values:
                        getattr(cls, key).append(value)
                classes[node.id] = cls
            del props
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        onto.save(file=str(path), format="rdfxml")

    @classmethod
    def from_owl(cls, path: Path) -> Ontology:
        import owlready2

        world = owlready2.World()
        try:
            onto = world.get_ontology(path.resolve().as_uri()).load()
        except Exception as exc:  # owlready2 raises several parser-specific types
            raise PipelineError(f"{path}: cannot read as OWL ({exc.__class__.__name__}: {exc})") from None
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

        result.ambiguous = {fold_term(t) for t in prop(roots[0], "ambiguous_term")}
        ids = {roots[0]: result.root}
        # Pre-order, children in file order: the same order the file was written in, so a
        # repeated name gets the same "<parent> > <name>" id it had before.
        stack = [(child, roots[0]) for child in sorted(kids.get(roots[0], []), key=order.get, reverse=True)]
        while stack:
            child, c = stack.pop()
            icd, kind = prop(child, "icd10"), prop(child, "kind_of")
            name = str(label[child])
            ids[child] = result.unique_id(name, ids[c])
            result.add(Node(name, ids[c], prop(child, "synonym"), prop(child, "abbreviation"),
                            icd[0] if icd else None, id=ids[child], aliases=prop(child, "alias"),
                            kind_of=kind[0] if kind else None, signs=prop(child, "sign")))
            stack.extend((k, child) for k in sorted(kids.get(child, []), key=order.get, reverse=True))
        return result


_ADJECTIVE_ENDINGS = ("al", "ous", "ic", "ign", "ant", "ary", "ive", "ory")


def is_grouping_word(ontology: Ontology, node_id: str, term: str) -> bool:
    """A term of a grouping node that is a bare adjective ("bacterial", "benign", "hereditary").

    Such words occur in ordinary prose ("a viral illness called pityriasis rosea") and would
    turn into a diagnosis; they stay in paths and lookups but are not matched in captions.
    """
    return bool(ontology.children.get(node_id)) and " " not in term.strip() and term.strip().endswith(_ADJECTIVE_ENDINGS)


@functools.cache
def project_ontology() -> Ontology | None:
    """Our own ontology (``ontology/conditions.yaml``), the reference for imports and crosswalks."""
    return Ontology.from_yaml(PROJECT_YAML) if PROJECT_YAML.exists() else None


def singular_forms(term: str) -> list[str]:
    """Singulars a plural last word may stand for: keratoses -> keratosis, naevi -> naevus,
    bullae -> bulla, lines -> line, patches -> patch, bodies -> body."""
    head, _, last = term.rpartition(" ")
    forms = []
    for suffix, repl in (("ses", "sis"), ("ies", "y"), ("ches", "ch"), ("shes", "sh"), ("xes", "x"), ("i", "us"),
                         ("ae", "a"), ("a", "um"), ("s", "")):
        if last.endswith(suffix) and len(last) > len(suffix) + 2:
            forms.append(last[: -len(suffix)] + repl)
    return [f"{head} {f}".strip() for f in dict.fromkeys(forms)]


def fold_term(term: str) -> str:
    """Case, hyphen, apostrophe and spacing folded for lookups: "Stevens-Johnson" = "stevens johnson",
    "Milker_s nodule" = "milker's nodule" = "milker nodule"."""
    t = term.strip().lower().replace("\u2019", "'")
    t = re.sub(r"(?<=[a-z])_s\b", "", t)    # folder names write the possessive "Milker_s nodule"
    t = re.sub(r"'s\b", "", t)
    t = re.sub(r"[-_/\s]+", " ", t)
    return t.strip()
