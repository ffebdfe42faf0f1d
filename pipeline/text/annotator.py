"""Annotate one caption: ontology labels, concepts, body sites, symptoms, age, sex, skin type.

Output follows Derm1M's release conventions (comma-joined strings and "No ... information"
markers) and also typed columns. Conditions: the most specific affirmed nodes form
``disease_label``; negated mentions and differentials are kept apart; the record's context
(video/article/thread title) is used only when the caption names no condition at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from spacy.tokens import Doc

from pipeline.text.crosswalk import Crosswalk, build_crosswalk, lent_terms
from pipeline.text.demographics import extract_age, extract_sex, extract_skin_type
from pipeline.text.matching import Mention, VocabularyMatcher
from pipeline.text.ontology import Ontology, fold_term, is_grouping_word, project_ontology
from pipeline.text.vocab import Entry, load_body_sites, load_concepts, load_symptoms

NO_DIAGNOSIS = "no definitive diagnosis"
NO_CONCEPTS = "No visual concepts"
NO_LOCATION = "No body location information"
NO_SYMPTOMS = "No symptom information"
NO_AGE = "No age information"
NO_GENDER = "No gender information"


def condition_variants(term: str) -> list[str]:
    """Spelling variants a caption may use: plurals of the last word, hyphens, possessive eponyms."""
    out = {term}
    words = term.split(" ")
    last = words[-1]
    plurals = []
    if re.search(r"[a-z]$", last):
        if last.endswith("is"):
            plurals.append(last[:-2] + "es")       # keratosis -> keratoses
        elif last.endswith("us"):
            plurals.append(last[:-2] + "i")        # naevus -> naevi
        elif last.endswith(("s", "x", "ch", "sh")):
            plurals.append(last + "es")
        elif last.endswith("y") and not last.endswith(("ay", "ey", "oy", "uy")):
            plurals.append(last[:-1] + "ies")
        elif last.endswith("a"):
            plurals += [last + "s", last + "e"]    # bulla -> bullae
        elif last.endswith("um"):
            plurals.append(last[:-2] + "a")
        else:
            plurals.append(last + "s")
    for p in plurals:
        out.add(" ".join([*words[:-1], p]))
    for t in list(out):
        if "-" in t:
            out.add(t.replace("-", " "))
            out.add(t.replace("-", ""))
        if len(words) > 1 and not words[0].endswith("'s"):
            out.add(words[0] + "'s " + " ".join(t.split(" ")[1:]))
    return sorted(out)


def is_grouping_adjective(ontology: Ontology, node_id: str) -> bool:
    """A grouping node named by a bare adjective ("bacterial", "benign"): never matched in text."""
    return is_grouping_word(ontology, node_id, ontology.name(node_id))


# Level-1 groups whose nodes describe a finding rather than name a disease (scar, ulcer,
# striae, hyperpigmentation). A caption naming a disease and a finding is labelled with the
# disease: "a scar after excision of a basal cell carcinoma" is a BCC image.
DESCRIPTIVE_GROUPS = {"reaction patterns and descriptive terms"}


# Tokens that may separate the conditions of one list ("tinea, candidiasis", "psoriasis and
# lichen planus"); "pictures"/"photos" glue DermNet-style class names ("Psoriasis pictures
# Lichen Planus and related diseases").
LIST_GLUE = {",", "and", "&", "/", "+", "pictures", "photos", "images"}


@dataclass
class Diagnosis:
    labels: list[str]          # the diagnosis (disease_label)
    others: list[str]          # other affirmed conditions named
    differential: list[str]
    negated: list[str]
    source: str                # caption | context | source_label | none


@dataclass
class Annotation:
    disease_labels: list[str]
    differential_labels: list[str]
    negated_labels: list[str]
    other_labels: list[str]
    label_source: str
    hierarchical: list[str]
    concepts: list[str]
    sites: list[str]
    symptoms: list[str]
    age: int | None
    sex: str | None
    skin_type: int | None

    def release_row(self) -> dict[str, str]:
        """The seven columns in Derm1M's release conventions."""
        return {
            "disease_label": ", ".join(self.disease_labels) or NO_DIAGNOSIS,
            "hierarchical_disease_label": ", ".join(self.hierarchical),
            "skin_concept": ", ".join(self.concepts) or NO_CONCEPTS,
            "body_location": ", ".join(self.sites) or NO_LOCATION,
            "symptoms": ", ".join(self.symptoms) or NO_SYMPTOMS,
            "age": str(self.age) if self.age is not None else NO_AGE,
            "gender": self.sex or NO_GENDER,
        }

    def table_row(self) -> dict:
        row = self.release_row()
        row.update({
            "disease_labels": self.disease_labels, "differential_labels": self.differential_labels,
            "negated_labels": self.negated_labels, "other_labels": self.other_labels,
            "label_source": self.label_source,
            "skin_concepts": self.concepts, "body_locations": self.sites, "symptom_list": self.symptoms,
            "age_years": self.age, "sex": self.sex, "skin_type": self.skin_type,
        })
        return row


def _is_descriptive(ontology: Ontology, node_id: str) -> bool:
    return node_id != ontology.root and fold_term(ontology.name(ontology.path(node_id)[0])) in DESCRIPTIVE_GROUPS


def _descriptive_nodes(ontology: Ontology, reference: Ontology | None, walk: Crosswalk | None) -> set[str]:
    """Target nodes that describe a finding. With a crosswalk, the reference decides for the
    nodes it maps onto: Derm1M files urticaria and vitiligo under "reaction patterns and
    descriptive terms", but they are diseases, not findings."""
    verdicts: dict[str, list[bool]] = {}
    if reference is not None and walk is not None:
        for ref_id, target_id in walk.exact.items():
            verdicts.setdefault(target_id, []).append(_is_descriptive(reference, ref_id))
    return {n for n in ontology.nodes if n != ontology.root
            and (all(verdicts[n]) if n in verdicts else _is_descriptive(ontology, n))}


class Annotator:
    """Builds the matchers once; call it per caption.

    ``reference`` (default: our own ontology) lends its synonyms and abbreviations to the nodes
    of a different target ontology through the crosswalk (see :mod:`pipeline.text.crosswalk`).
    ``conditions_only`` matches condition mentions alone (for :meth:`diagnose` at full speed);
    the vocabularies still tell which conditions are findings.
    """

    def __init__(self, ontology: Ontology, concepts: list[Entry], sites: list[Entry], symptoms: list[Entry],
                 reference: Ontology | None = None, conditions_only: bool = False) -> None:
        self.ontology = ontology
        self.matcher = VocabularyMatcher()
        terms = list(ontology.terms())
        walk = None
        if reference is not None and not set(reference.nodes) <= set(ontology.nodes):
            walk = build_crosswalk(reference, ontology)
            for target_id, (syns, abbrs) in lent_terms(reference, ontology, walk).items():
                terms += [(target_id, t, False) for t in syns] + [(target_id, t, True) for t in abbrs]
        # A generated variant ("seborrheic keratoses") never shadows a node named exactly so.
        exact = {fold_term(t): n for n, t, abbr in terms if not abbr}
        by_node: dict[str, list[str]] = {}
        abbrevs: dict[str, list[str]] = {}
        for node_id, term, is_abbr in terms:
            if not is_abbr and is_grouping_word(ontology, node_id, term):
                continue
            if is_abbr:
                abbrevs.setdefault(node_id, []).extend([term, term + "s"])
            else:
                by_node.setdefault(node_id, []).extend(
                    v for v in condition_variants(term) if exact.get(fold_term(v), node_id) == node_id)
        for node_id, phrases in by_node.items():
            self.matcher.add("condition", node_id, phrases)
        for node_id, phrases in abbrevs.items():
            self.matcher.add("condition", node_id, phrases, case_sensitive=True)
        for kind, entries in (("concept", concepts), ("site", sites), ("symptom", symptoms)):
            for e in [] if conditions_only else entries:
                self.matcher.add(kind, e.name, list(e.phrases))
        self.negated_name = {("symptom", e.name): e.negated_name for e in symptoms if e.negated_name}
        self.negated_name.update({("concept", e.name): e.negated_name for e in concepts if e.negated_name})
        # Findings: the descriptive group, and nodes named by a clinical concept
        # ("hyperpigmentation ... consistent with actinic keratoses" is an AK image).
        concept_terms = {fold_term(p) for e in concepts for p in e.phrases}
        self.descriptive = _descriptive_nodes(ontology, reference, walk) | {
            n for n, t, abbr in terms if not abbr and fold_term(t) in concept_terms}

    @classmethod
    def from_paths(cls, ontology: str | Path, concepts: str | Path, sites: str | Path, symptoms: str | Path) -> Annotator:
        return cls(Ontology.load(ontology), load_concepts(concepts), load_body_sites(sites), load_symptoms(symptoms),
                   reference=project_ontology())

    def _most_specific(self, ids: list[str]) -> list[str]:
        ids = list(dict.fromkeys(ids))
        ancestors = {a for i in ids for a in self.ontology.path(i)[:-1]}
        return [x for x in ids if x not in ancestors]

    def _conditions(self, doc: Doc, mentions: list[Mention]) -> tuple[list[str], list[str], list[str], list[str]]:
        """(labels, other affirmed, differentials, negated) as node ids.

        The diagnosis is the caption's subject: the first affirmed condition, together with
        the conditions listed right beside it ("tinea, candidiasis", "psoriasis and lichen
        planus", DermNet's "Psoriasis pictures Lichen Planus"), each made as specific as any
        affirmed mention of a descendant ("eczema, specifically atopic dermatitis"). A finding
        from the descriptive group (scar, ulcer) is the diagnosis only when no disease is named.
        Other affirmed conditions (complications, comparisons, comorbidities) are kept apart.
        """
        affirmed = [m for m in mentions if m.kind == "condition" and m.status == "affirmed"]
        diseases = [m for m in affirmed if m.label not in self.descriptive]
        pool = diseases or affirmed
        group: list[Mention] = pool[:1]
        for m in pool[1:]:
            prev = group[-1]
            between = doc[prev.end:m.start]
            if any(t.lower_ not in LIST_GLUE for t in between):
                break
            group.append(m)
        affirmed_ids = list(dict.fromkeys(m.label for m in affirmed))
        labels: list[str] = []
        for m in group:
            finer = [x for x in affirmed_ids if m.label in self.ontology.path(x)[:-1]]
            labels.extend(finer or [m.label])
        labels = self._most_specific(labels)
        covered = {a for x in labels for a in self.ontology.path(x)}
        others = [x for x in self._most_specific(affirmed_ids) if x not in covered]
        differential = [x for x in self._most_specific([m.label for m in mentions if m.kind == "condition"
                                                         and m.status == "differential"]) if x not in affirmed_ids]
        negated = [x for x in dict.fromkeys(m.label for m in mentions if m.kind == "condition" and m.status == "negated")
                   if x not in affirmed_ids and x not in differential]
        return labels, others, differential, negated

    def map_label(self, label: str) -> list[str]:
        """Node ids for a structured dataset label (a HAM10000 dx name, a DermNet folder name).

        The synonym index first (whole label, then its comma parts), then the caption matcher
        over the label text, so "Anal cancer and anal canal cancer" or "Tinea (ringworm) images"
        still find their node. Negation cues do not apply to a label.
        """
        found = self.ontology.resolve(label)
        if found:
            return found
        _, mentions = self.matcher(label)
        return self._most_specific([m.label for m in mentions if m.kind == "condition"])

    def diagnose(self, caption: str, context: str = "", source_label: str = "",
                 matched: tuple[Doc, list[Mention]] | None = None) -> Diagnosis:
        """The condition mapping alone, as node ids.

        A structured ``source_label`` that maps wins; else the caption's affirmed mentions; the
        ``context`` (video/article/thread title) only when the caption names no condition at all.
        """
        doc, mentions = matched or self.matcher(caption)
        labels, others, differential, negated = self._conditions(doc, mentions)
        source = "caption" if labels else "none"
        structured = self.map_label(source_label) if source_label else []
        if structured:
            labels, source = structured, "source_label"
            others = [x for x in others if x not in labels]
        elif not labels and not differential and not negated and context:
            labels = self._conditions(*self.matcher(context))[0]
            source = "context" if labels else "none"
        return Diagnosis(labels, others, differential, negated, source)

    def __call__(self, caption: str, context: str = "", source_label: str = "") -> Annotation:
        doc, mentions = self.matcher(caption)
        dx = self.diagnose(caption, context, source_label, (doc, mentions))
        labels, differential, negated, source = dx.labels, dx.differential, dx.negated, dx.source
        name = self.ontology.name
        hierarchical = list(dict.fromkeys(name(x) for label in labels for x in self.ontology.path(label)))
        found: dict[str, list[str]] = {"concept": [], "site": [], "symptom": []}
        for m in mentions:
            if m.kind == "condition":
                continue
            label = m.label
            if m.status == "negated":
                label = self.negated_name.get((m.kind, m.label))
                if label is None:
                    continue
            found[m.kind].append(label)
        return Annotation(
            disease_labels=[name(x) for x in labels], differential_labels=[name(x) for x in differential],
            negated_labels=[name(x) for x in negated], other_labels=[name(x) for x in dx.others],
            label_source=source, hierarchical=hierarchical,
            concepts=list(dict.fromkeys(found["concept"])), sites=list(dict.fromkeys(found["site"])),
            symptoms=list(dict.fromkeys(found["symptom"])),
            age=extract_age(caption), sex=extract_sex(caption), skin_type=extract_skin_type(caption),
        )
