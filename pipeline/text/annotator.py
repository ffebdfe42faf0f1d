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

from pipeline.text.demographics import extract_age, extract_sex, extract_skin_type
from pipeline.text.matching import Mention, VocabularyMatcher
from pipeline.text.ontology import Ontology
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


_ADJECTIVE_ENDINGS = ("al", "ous", "ic", "ign", "ant", "ary", "ive")


def is_grouping_adjective(ontology: Ontology, name: str) -> bool:
    """A grouping node named by a bare adjective ("bacterial", "benign", "hereditary").

    Such names match ordinary prose ("a viral illness called pityriasis rosea") and would turn
    into a diagnosis; they stay in paths but are not matched in captions.
    """
    return bool(ontology.children.get(name)) and " " not in name and name.endswith(_ADJECTIVE_ENDINGS)


@dataclass
class Annotation:
    disease_labels: list[str]
    differential_labels: list[str]
    negated_labels: list[str]
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
            "negated_labels": self.negated_labels, "label_source": self.label_source,
            "skin_concepts": self.concepts, "body_locations": self.sites, "symptom_list": self.symptoms,
            "age_years": self.age, "sex": self.sex, "skin_type": self.skin_type,
        })
        return row


class Annotator:
    """Builds the matchers once; call it per caption."""

    def __init__(self, ontology: Ontology, concepts: list[Entry], sites: list[Entry], symptoms: list[Entry]) -> None:
        self.ontology = ontology
        self.matcher = VocabularyMatcher()
        by_node: dict[str, list[str]] = {}
        abbrevs: dict[str, list[str]] = {}
        for node, term, is_abbr in ontology.terms():
            if term == node and is_grouping_adjective(ontology, node):
                continue
            if is_abbr:
                abbrevs.setdefault(node, []).extend([term, term + "s"])
            else:
                by_node.setdefault(node, []).extend(condition_variants(term))
        for node, phrases in by_node.items():
            self.matcher.add("condition", node, phrases)
        for node, phrases in abbrevs.items():
            self.matcher.add("condition", node, phrases, case_sensitive=True)
        for kind, entries in (("concept", concepts), ("site", sites), ("symptom", symptoms)):
            for e in entries:
                self.matcher.add(kind, e.name, list(e.phrases))
        self.negated_name = {("symptom", e.name): e.negated_name for e in symptoms if e.negated_name}
        self.negated_name.update({("concept", e.name): e.negated_name for e in concepts if e.negated_name})

    @classmethod
    def from_paths(cls, ontology: str | Path, concepts: str | Path, sites: str | Path, symptoms: str | Path) -> Annotator:
        return cls(Ontology.load(ontology), load_concepts(concepts), load_body_sites(sites), load_symptoms(symptoms))

    def _conditions(self, mentions: list[Mention]) -> tuple[list[str], list[str], list[str]]:
        affirmed, differential, negated = [], [], []
        for m in mentions:
            if m.kind != "condition":
                continue
            {"affirmed": affirmed, "differential": differential, "negated": negated}[m.status].append(m.label)
        affirmed = list(dict.fromkeys(affirmed))
        # Most specific: drop a label when one of its descendants is also named.
        ancestors = {a for label in affirmed for a in self.ontology.path(label)[:-1]}
        labels = [x for x in affirmed if x not in ancestors]
        differential = [x for x in dict.fromkeys(differential) if x not in affirmed]
        negated = [x for x in dict.fromkeys(negated) if x not in affirmed and x not in differential]
        return labels, differential, negated

    def __call__(self, caption: str, context: str = "") -> Annotation:
        _, mentions = self.matcher(caption)
        labels, differential, negated = self._conditions(mentions)
        source = "caption" if labels else "none"
        if not labels and not differential and not negated and context:
            _, ctx_mentions = self.matcher(context)
            labels, _, _ = self._conditions(ctx_mentions)
            source = "context" if labels else "none"
        hierarchical = list(dict.fromkeys(x for label in labels for x in self.ontology.path(label)))
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
            disease_labels=labels, differential_labels=differential, negated_labels=negated, label_source=source,
            hierarchical=hierarchical,
            concepts=list(dict.fromkeys(found["concept"])), sites=list(dict.fromkeys(found["site"])),
            symptoms=list(dict.fromkeys(found["symptom"])),
            age=extract_age(caption), sex=extract_sex(caption), skin_type=extract_skin_type(caption),
        )
