"""Crosswalk between two ontologies: which node of a target (Derm1M's ontology.json, a user's
OWL) each node of our reference ontology corresponds to.

Why: a released ontology is mostly names — Derm1M's has no synonyms beyond a few comma-joined
ones and no abbreviations — so matching captions against it alone misses "HSV", "cold sores"
or "naevi". Our ontology carries that vocabulary. Walking the crosswalk lends each target node
the terms of the reference nodes that mean it, and a reference node the target lacks (nodular
melanoma) lends its terms to the nearest target ancestor (melanoma), so labels come out in the
target's vocabulary at the most specific level it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.text.ontology import Ontology, fold_term, is_grouping_word


@dataclass
class Crosswalk:
    """``exact``: reference id -> target id for equal/equivalent nodes; ``coarse``: reference id
    -> target id of the nearest mapped ancestor, for reference nodes the target does not have."""

    exact: dict[str, str] = field(default_factory=dict)
    coarse: dict[str, str] = field(default_factory=dict)

    def target(self, ref_id: str) -> str | None:
        return self.exact.get(ref_id) or self.coarse.get(ref_id)


def _pick(target: Ontology, candidates: list[str], context: set[str]) -> str:
    """Among equally named target nodes, the one whose path shares most names with ``context``."""
    return max(candidates, key=lambda c: (len({fold_term(n) for n in target.path_names(c)} & context), -candidates.index(c)))


def build_crosswalk(reference: Ontology, target: Ontology, min_level: int = 2) -> Crosswalk:
    """Map every reference node to a target node.

    A reference node maps exactly when its name, a synonym or an abbreviation resolves in the
    target. Otherwise it maps to the target node of its nearest exactly-mapped ancestor, but
    only at ``min_level`` or deeper: lending "nodular melanoma" to "melanoma" is right, lending
    every unmapped inflammatory condition to "inflammatory" would turn specific diagnoses into
    a level-1 label.
    """
    walk = Crosswalk()
    for node in reference.walk():
        context = {fold_term(n) for n in reference.path_names(node.id)}
        for term in [node.name, *node.synonyms, *node.abbreviations, *node.aliases]:
            found = target.resolve(term)
            if found:
                walk.exact[node.id] = _pick(target, found, context)
                break
    for node in reference.walk():
        if node.id in walk.exact:
            continue
        for broader in _broader(reference, node.id):
            mapped = walk.exact.get(broader)
            if mapped is not None:
                if target.level(mapped) >= min_level and not is_grouping_word(target, mapped, target.name(mapped)):
                    walk.coarse[node.id] = mapped
                break
    return walk


def _broader(ontology: Ontology, node_id: str) -> list[str]:
    """Nodes a node falls back to, nearest first: its ``kind_of`` chain, then its ancestors."""
    out: list[str] = []
    current: str | None = node_id
    while current is not None and current not in out:
        out.append(current)
        current = ontology.nodes[current].kind_of
    for start in list(out):
        out.extend(a for a in reversed(ontology.path(start)[:-1]) if a not in out)
    return out[1:]


def lent_terms(reference: Ontology, target: Ontology, walk: Crosswalk | None = None) -> dict[str, tuple[list[str], list[str]]]:
    """target id -> (synonyms, abbreviations) lent by the reference, never a term the target
    already gives another node, and exact mappings before coarse ones (first claim wins)."""
    walk = walk or build_crosswalk(reference, target)
    own = {term if abbr else fold_term(term) for _, term, abbr in target.terms(aliases=True)}
    claimed: dict[str, str] = {}
    out: dict[str, tuple[list[str], list[str]]] = {}
    for mapping in (walk.exact, walk.coarse):
        for ref_id, target_id in mapping.items():
            if is_grouping_word(target, target_id, target.name(target_id)):
                continue   # "bacterial infection" must not become the label "bacterial"
            node = reference.nodes[ref_id]
            syns, abbrs = out.setdefault(target_id, ([], []))
            for term, is_abbr in [(node.name, False), *((s, False) for s in node.synonyms),
                                  *((a, True) for a in node.abbreviations)]:
                if not is_abbr and is_grouping_word(reference, ref_id, term):
                    continue
                key = term if is_abbr else fold_term(term)
                if key in own or claimed.setdefault(key, target_id) != target_id:
                    continue
                if term not in (abbrs if is_abbr else syns):
                    (abbrs if is_abbr else syns).append(term)
    return {k: v for k, v in out.items() if v[0] or v[1]}
