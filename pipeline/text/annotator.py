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
from pipeline.text.demographics import (
    age_group,
    extract_age,
    extract_duration_days,
    extract_sex,
    extract_skin_type,
)
from pipeline.text.matching import Mention, VocabularyMatcher
from pipeline.text.ontology import Ontology, fold_term, is_grouping_word, project_ontology
from pipeline.text.vocab import (
    Entry,
    load_body_sites,
    load_concept_templates,
    load_concepts,
    load_symptoms,
)

NO_DIAGNOSIS = "no definitive diagnosis"
DERMOSCOPY = re.compile(r"dermo?s?cop|dermatoscop|epiluminescence", re.IGNORECASE)
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
        if len(words) == 2 and "-" not in t:
            out.add(t.replace(" ", "-", 1))          # "Kaposi-sarcoma"
    if len(words) == 1:
        out.update(adjective_forms(term))
    return sorted(out)


# How a one-word condition name turns into its adjective or -ation form ("onychomycotic",
# "syphilitic", "scabietic", "ulcerated", "eczematous"): (ending, replacements), first match wins.
ADJECTIVE_ENDINGS = (("itis", ("itic",)), ("sis", ("tic",)), ("ies", ("ietic",)), ("is", ("itic",)),
                     ("cer", ("cerated", "ceration", "cerations", "cerative")), ("ma", ("matous",)))


def adjective_forms(word: str) -> list[str]:
    """Adjective and -ation forms of a one-word condition name, for matching in captions:
    "onychomycosis" -> "onychomycotic", "syphilis" -> "syphilitic", "scabies" -> "scabietic",
    "ulcer" -> "ulcerated"/"ulceration", "eczema" -> "eczematous". Names under five letters are
    left alone (too many ordinary words end like them)."""
    if len(word) < 5 or not word.isalpha():
        return []
    for ending, replacements in ADJECTIVE_ENDINGS:
        if word.endswith(ending):
            return [word[: -len(ending)] + r for r in replacements]
    return []


def is_grouping_adjective(ontology: Ontology, node_id: str) -> bool:
    """A grouping node named by a bare adjective ("bacterial", "benign"): never matched in text."""
    return is_grouping_word(ontology, node_id, ontology.name(node_id))


# Level-1 groups whose nodes describe a finding rather than name a disease (scar, ulcer,
# striae, hyperpigmentation). A caption naming a disease and a finding is labelled with the
# disease: "a scar after excision of a basal cell carcinoma" is a BCC image.
DESCRIPTIVE_GROUPS = {"reaction patterns and descriptive terms"}


# Tokens that may separate conditions named together as one diagnosis: juxtaposed names as in
# dataset class names ("Tinea Ringworm Candidiasis", DermNet's "Psoriasis pictures Lichen
# Planus and related diseases") and "A/B". A prose list ("diseases such as urticaria and
# eczema") gives examples, and Derm1M labels such a caption with its first condition only.
LIST_GLUE = {"/", "pictures", "photos", "images"}

# Words that introduce a caption's conclusion ("ulcers on the foot, consistent with keloid").
# When a caption names only findings, the one after such a cue is its diagnosis: keloid here,
# although the ulcer comes first and keloid is also a clinical concept.
DIAGNOSIS_CUES = ("consistent with", "typical of", "characteristic of", "suggestive of", "compatible with",
                  "diagnostic of", "looks like", "diagnosed with", "diagnosis is", "diagnosis of", "diagnosis:",
                  "due to", "caused by", "in keeping with", "indicative of")


# Cues that introduce the conclusion of a story ("misdiagnosed as X ... finally diagnosed with
# Y", "history of X ... the diagnosis is Y"): the condition after the last of them is the
# label, the conditions named before it are context.
FINAL_DIAGNOSIS_CUES = ("diagnosed with", "diagnosed as", "diagnosis is", "diagnosis was", "diagnosis of",
                        "diagnosis:", "confirmed as", "confirmed to be", "final diagnosis", "consistent with",
                        "compatible with", "in keeping with", "diagnostic of")


@dataclass
class Diagnosis:
    labels: list[str]          # the diagnosis (disease_label)
    others: list[str]          # other affirmed conditions named
    differential: list[str]
    negated: list[str]
    source: str                # caption | hedged | sign | context | source_label | none


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
    released_symptoms: list[str]     # the symptoms in Derm1M's vocabulary (the release column)
    age: int | None
    sex: str | None
    skin_type: int | None
    age_group: str | None = None
    duration_days: int | None = None
    released_sites: list[str] | None = None   # the sites in Derm1M's vocabulary (None: same as sites)
    released_concepts: list[str] | None = None   # the concepts the release column reports (None: concepts)

    def release_row(self) -> dict[str, str]:
        """The seven columns in Derm1M's release conventions."""
        return {
            "disease_label": ", ".join(self.disease_labels) or NO_DIAGNOSIS,
            "hierarchical_disease_label": ", ".join(self.hierarchical),
            "skin_concept": ", ".join(self.concepts if self.released_concepts is None else self.released_concepts)
            or NO_CONCEPTS,
            "body_location": ", ".join(self.sites if self.released_sites is None else self.released_sites) or NO_LOCATION,
            "symptoms": ", ".join(self.released_symptoms) or NO_SYMPTOMS,
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
            "age_years": self.age, "age_group": self.age_group, "sex": self.sex, "skin_type": self.skin_type,
            "duration_days": self.duration_days,
        })
        return row


def _phrase_owners(ontology: Ontology, terms: list[tuple[str, str, bool]]) -> dict[str, str]:
    """One node per matchable phrase (names, synonyms and their generated variants).

    A phrase two nodes could claim goes to the descendant when one is an ancestor of the other
    ("ulcers" is both the plural of Derm1M's "ulcer" and a synonym of its parent "ulcers,
    erosion of skin": a caption saying "ulcers" is about ulcers); otherwise a node's own
    term beats another node's generated variant ("seborrheic keratoses" is a Derm1M node of its
    own, not just the plural of "seborrheic keratosis"); otherwise the first claim stands.
    Bare-adjective grouping words are never matched.
    """
    owner: dict[str, tuple[str, bool]] = {}
    for node_id, term, is_abbr in terms:
        if is_abbr or is_grouping_word(ontology, node_id, term):
            continue
        own = {term.lower()}
        for phrase in condition_variants(term.lower()):
            exact = phrase in own
            held = owner.get(phrase)
            if held is None:
                owner[phrase] = (node_id, exact)
            elif held[0] == node_id:
                owner[phrase] = (node_id, exact or held[1])
            else:
                descendant = held[0] in ontology.path(node_id)
                own_term_beats_variant = node_id not in ontology.path(held[0]) and exact and not held[1]
                if descendant or own_term_beats_variant:
                    owner[phrase] = (node_id, exact)
    return {phrase: node_id for phrase, (node_id, _) in owner.items()}


def _sign_phrases(ontology: Ontology, reference: Ontology | None, walk: Crosswalk | None) -> dict[str, list[str]]:
    """node id -> sign phrases: the target's own, plus the reference's through the crosswalk."""
    out: dict[str, list[str]] = {}
    for node in ontology.walk():
        if node.signs:
            out.setdefault(node.id, []).extend(node.signs)
    if reference is not None and walk is not None:
        for node in reference.walk():
            target = walk.target(node.id)
            if node.signs and target is not None and not is_grouping_word(ontology, target, ontology.name(target)):
                out.setdefault(target, []).extend(node.signs)
    return out


def _after_diagnosis_cue(doc: Doc, mention: Mention, cues: tuple[str, ...] = DIAGNOSIS_CUES) -> bool:
    """Whether ``mention`` follows one of ``cues`` (an article may sit between); whole words
    only, so "misdiagnosed as" is not "diagnosed as"."""
    words = doc[max(0, mention.start - 5):mention.start].text.lower().split()
    if words and words[-1] in ("a", "an", "the"):
        words = words[:-1]
    return (" " + " ".join(words)).endswith(_SPACED.get(cues) or _SPACED.setdefault(cues, tuple(" " + c for c in cues)))


_SPACED: dict[tuple[str, ...], tuple[str, ...]] = {}


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
                 reference: Ontology | None = None, conditions_only: bool = False,
                 templates: list[tuple[str, tuple[str, ...]]] | None = None) -> None:
        self.ontology = ontology
        self.templates = templates or []
        self._label_cache: dict[str, list[str]] = {}
        self.matcher = VocabularyMatcher(overlap_groups={"sign": "condition"}, nested={"concept"})
        terms = list(ontology.terms())
        walk = None
        if reference is not None and not set(reference.nodes) <= set(ontology.nodes):
            walk = build_crosswalk(reference, ontology)
            for target_id, (syns, abbrs) in lent_terms(reference, ontology, walk).items():
                terms += [(target_id, t, False) for t in syns] + [(target_id, t, True) for t in abbrs]
        owner = _phrase_owners(ontology, terms)
        # Grouping nodes named by a bare adjective ("inflammatory", "benign") are never a label,
        # whatever phrase matched them ("an inflammatory skin disease", "anti-inflammatory").
        self.grouping = {n for n in ontology.nodes if is_grouping_adjective(ontology, n)}
        by_node: dict[str, list[str]] = {}
        abbrevs: dict[str, list[str]] = {}
        for node_id, term, is_abbr in terms:
            if is_abbr:
                abbrevs.setdefault(node_id, []).extend([term, term + "s"])
        for phrase, node_id in owner.items():
            by_node.setdefault(node_id, []).append(phrase)
        for node_id, phrases in by_node.items():
            self.matcher.add("condition", node_id, phrases)
        for node_id, phrases in abbrevs.items():
            self.matcher.add("condition", node_id, phrases, case_sensitive=True)
        for node_id, phrases in _sign_phrases(ontology, reference, walk).items():
            self.matcher.add("sign", node_id, [v for p in phrases for v in condition_variants(p)])
        for kind, entries in (("concept", concepts), ("site", sites), ("symptom", symptoms)):
            for e in [] if conditions_only else entries:
                self.matcher.add(kind, e.name, list(e.phrases))
        # Image artefacts (hair, nail, ruler, gel) are objects in dermoscopic photographs; in
        # other captions the same words are anatomy ("nail involvement", "hair loss").
        self.artefacts = {e.name for e in concepts if e.group == "artefact"}
        self.distribution = {e.name for e in concepts if e.group == "arrangement/distribution"}
        self.unreleased_symptoms = {e.name for e in symptoms if not e.release}
        self.site_release = {e.name: e.release_as for e in sites}
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
                   reference=project_ontology(), templates=load_concept_templates(concepts))

    def _templates(self, caption: str) -> tuple[list[str], list[tuple[int, int]]]:
        """Concepts of the template sentences in ``caption`` and their character spans."""
        if not self.templates:
            return [], []
        low = caption.lower()
        concepts: list[str] = []
        spans: list[tuple[int, int]] = []
        for phrase, fixed in self.templates:
            at = low.find(phrase)
            if at >= 0:
                concepts.extend(fixed)
                spans.append((at, at + len(phrase)))
        return concepts, spans

    def _most_specific(self, ids: list[str]) -> list[str]:
        ids = list(dict.fromkeys(ids))
        ancestors = {a for i in ids for a in self.ontology.path(i)[:-1]}
        return [x for x in ids if x not in ancestors]

    def _conditions(self, doc: Doc, mentions: list[Mention], kind: str = "condition"
                    ) -> tuple[list[str], list[str], list[str], list[str]]:
        """(labels, other affirmed, differentials, negated) as node ids, from mentions of ``kind``
        ("condition", or "sign" when nothing is named).

        The diagnosis is the caption's subject: the first affirmed condition, together with any
        named right beside it (dataset class names such as "Tinea Ringworm Candidiasis"), each
        made as specific as any affirmed mention of a descendant ("eczema, specifically atopic
        dermatitis"). A finding (scar, ulcer, a node named by a clinical concept) is the
        diagnosis only when no disease is named. Other affirmed conditions (complications,
        comparisons, examples in a prose list) are kept apart as ``others``.
        """
        named = [m for m in mentions if m.kind == kind and m.label not in self.grouping]
        affirmed = [m for m in named if m.status == "affirmed"]
        diseases = [m for m in affirmed if m.label not in self.descriptive]
        concluded = [i for i, m in enumerate(diseases) if _after_diagnosis_cue(doc, m, FINAL_DIAGNOSIS_CUES)]
        if concluded:
            diseases = diseases[concluded[-1]:]    # the story's conclusion; earlier names are context
        pool = diseases or [m for m in affirmed if _after_diagnosis_cue(doc, m)] or affirmed
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
        background = [m.label for m in named if m.status == "context"]
        others = [x for x in self._most_specific([*affirmed_ids, *background]) if x not in covered]
        differential = [x for x in self._most_specific([m.label for m in named if m.status == "differential"])
                        if x not in affirmed_ids]
        negated = [x for x in dict.fromkeys(m.label for m in named if m.status == "negated")
                   if x not in affirmed_ids and x not in differential]
        return labels, others, differential, negated

    def map_label(self, label: str) -> list[str]:
        """Node ids for a structured dataset label (a HAM10000 dx name, a DermNet folder name).

        The synonym index first (whole label, then its comma parts), then the caption matcher
        over the label text, so "Anal cancer and anal canal cancer" or "Tinea (ringworm) images"
        still find their node. Negation cues do not apply to a label.
        """
        cached = self._label_cache.get(label)
        if cached is None:   # a source repeats a handful of labels over thousands of pairs
            cached = self.ontology.resolve(label)
            if not cached:
                _, mentions = self.matcher(label)
                cached = self._most_specific([m.label for m in mentions if m.kind == "condition"])
            self._label_cache[label] = cached
        return list(cached)

    def diagnose(self, caption: str, context: str = "", source_label: str = "",
                 matched: tuple[Doc, list[Mention]] | None = None) -> Diagnosis:
        """The condition mapping alone, as node ids. Evidence in decreasing order of trust:

        a structured ``source_label`` that maps; conditions the caption names; conditions the
        ``context`` (video/article/thread title) names, used only when the caption names none;
        a sign in the caption that points to a condition ("herald patch"), when the caption
        names nothing but findings (scar, ulcer) or nothing at all.
        """
        doc, mentions = matched or self.matcher(caption)
        labels, others, differential, negated = self._conditions(doc, mentions)
        source = "caption" if labels else "none"
        hedged = [x for x in differential if x not in self.descriptive]
        if hedged and not labels:
            # Nothing affirmed: the first hedged condition is the label, as in Derm1M
            # ("psoriasis or eczema", "might be", "potentially", "were considered"). A hedged
            # finding ("shiny or waxy with telangiectasia") is no diagnosis.
            labels, source = hedged[:1], "hedged"
        named = labels or differential or negated
        structured = self.map_label(source_label) if source_label else []
        if structured:
            labels, source = structured, "source_label"
            others = [x for x in others if x not in labels]
        elif not named and not labels and context:
            labels = self._conditions(*self.matcher(context))[0]
            source = "context" if labels else "none"
        if source in ("caption", "none") and all(x in self.descriptive for x in labels):
            # Nothing named but findings ("an ulcer"): a sign of a disease outranks them
            # ("Treponema pallidum, causing a painless ulcer" is syphilis).
            sign = self._conditions(doc, mentions, kind="sign")
            if not sign[0] and sign[2]:
                sign = (sign[2][:1], *sign[1:])     # a hedged sign ("likely caused by an allergic reaction to")
            if sign[0] and not all(x in self.descriptive for x in sign[0]):
                others = [x for x in [*labels, *others] if x not in sign[0]]
                labels, source = sign[0], "sign"
                if not named:
                    differential, negated = sign[2], sign[3]
        return Diagnosis(labels, others, differential, negated, source)

    def __call__(self, caption: str, context: str = "", source_label: str = "") -> Annotation:
        doc, mentions = self.matcher(caption)
        dx = self.diagnose(caption, context, source_label, (doc, mentions))
        labels, differential, negated, source = dx.labels, dx.differential, dx.negated, dx.source
        name = self.ontology.name
        hierarchical = list(dict.fromkeys(name(x) for label in labels for x in self.ontology.path(label)))
        age = extract_age(caption)
        found: dict[str, list[str]] = {"concept": [], "site": [], "symptom": []}
        dermoscopic = DERMOSCOPY.search(caption) is not None
        # A symptom word inside a longer concept phrase describes the morphology:
        # "pus-filled bumps" are pustules, not an exudate.
        concept_spans = [(m.start, m.end) for m in mentions if m.kind == "concept"]
        # A distribution word inside or right before a condition's name names the subtype, not
        # this image's finding ("generalized vitiligo", "linear lichen planus", "localized
        # scleroderma"); morphology words stay ("bullous pemphigoid" shows bullae).
        condition_spans = [(m.start, m.end) for m in mentions if m.kind == "condition"]
        condition_spans += [(m.start - 1, m.end) for m in mentions if m.kind == "condition" and m.start > 0]
        fixed, template_chars = self._templates(caption)
        for m in mentions:
            if m.kind == "concept" and any(a <= doc[m.start].idx < b for a, b in template_chars):
                continue   # inside a template sentence: its fixed concept set stands instead
            if m.kind == "concept" and m.label in self.distribution and any(
                    s <= m.start and m.end <= e and e - s > m.end - m.start for s, e in condition_spans):
                continue
            if m.kind in ("condition", "sign"):
                continue
            if m.kind == "concept" and m.label in self.artefacts and not dermoscopic:
                continue
            if m.kind == "symptom" and any(s <= m.start and m.end <= e and e - s > m.end - m.start
                                           for s, e in concept_spans):
                continue
            if m.status == "context":
                continue   # "can also be present on the face": a statement about the disease
            label = m.label
            if m.status == "negated":
                label = self.negated_name.get((m.kind, m.label))
                if label is None:
                    continue
            found[m.kind].append(label)
        found["concept"].extend(fixed)
        return Annotation(
            disease_labels=[name(x) for x in labels], differential_labels=[name(x) for x in differential],
            negated_labels=[name(x) for x in negated], other_labels=[name(x) for x in dx.others],
            label_source=source, hierarchical=hierarchical,
            concepts=list(dict.fromkeys(found["concept"])), sites=list(dict.fromkeys(found["site"])),
            symptoms=list(dict.fromkeys(found["symptom"])),
            released_sites=[x for x in dict.fromkeys(self.site_release.get(s, s) for s in found["site"]) if x],
            released_symptoms=[x for x in dict.fromkeys(found["symptom"]) if x not in self.unreleased_symptoms],
            age=age, sex=extract_sex(caption), skin_type=extract_skin_type(caption),
            age_group=age_group(caption, age), duration_days=extract_duration_days(caption),
        )
