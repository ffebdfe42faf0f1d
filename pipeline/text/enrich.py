"""Knowledge-enhanced captions from the annotate stage's outputs (Derm1M's step 5, deterministic).

Derm1M rewrote its captions with an LLM fed the ontology path and the clinical concepts of
each pair. Here the same knowledge becomes two template captions, so every rerun gives the
same text and no model is needed:

- ontology caption, from ``disease_labels`` and their ontology paths: "Allergic contact
  dermatitis, a form of contact dermatitis within eczema, a non-infectious inflammatory
  condition." One clause per label, joined with semicolons.
- concept caption, from ``skin_concepts``, ``body_locations`` and the released
  ``symptom_list`` entries: "The image shows red, scaly plaques on the elbow."

Phrasing is read from the vocabularies rather than hard-coded per term: a grouping node whose
name is an adjective ("non-infectious", "malignant non-melanocytic") qualifies its category,
a plural grouping ("neurocutaneous syndromes") names what its members are ("a neurocutaneous
syndrome"), a condition above the label ("eczema") gives "a form of eczema"; a concept's group
says whether it is an adjective (colour, shape, texture, arrangement) or a noun (morphology,
dermoscopic structure, artefact), and its synonyms supply plurals ("bullae") and adjective
forms ("erythematous"). Nothing is added that the annotations do not state: the annotate stage
records no image kind (dermoscopic or clinical), so neither caption names one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.text.ontology import Ontology
from pipeline.text.vocab import Entry

# Groups of ontology/concepts.yaml whose entries describe a lesion (adjectives) in the order
# English puts them before a noun ("scattered, annular, red, scaly plaques"), and the groups
# whose entries are things (nouns).
ADJECTIVE_GROUPS = ("arrangement/distribution", "shape/border", "colour", "texture/surface")
HEAD_GROUP = "primary morphology"
FEATURE_GROUP = "secondary morphology"
STRUCTURE_GROUP = "dermoscopic structure"
ARTEFACT_GROUP = "artefact"

# A grouping node's category noun when its name is an adjective ("inflammatory" -> condition);
# "infectious" names its members "infections" ("a bacterial infection").
CATEGORY_NOUN = "condition"
NOUN_OF_ADJECTIVE = {"infectious": "infection"}

# "-ar" only as "-ular"/"-lar"/"-near": "vascular", "linear" but not "scar" or "ear".
_ADJ_SUFFIXES = ("ous", "al", "ic", "ory", "ign", "ant", "ary", "form", "oid", "ive", "lar", "near", "ed", "ent",
                 "ish", "ile", "id", "ing", "ate")
_NOUN_SUFFIXES = ("osis", "ema", "ion", "ity", "ness", "ia", "ism")
_SINGULAR_ONLY = ("sis", "us", "is", "ss", "xis", "ae")


# -- words ---------------------------------------------------------------------------------
def is_adjective(name: str) -> bool:
    """True for a grouping name whose last word is an adjective ("non-infectious", "benign")."""
    last = name.split()[-1] if name.split() else name
    return last.endswith(_ADJ_SUFFIXES) and not last.endswith(_NOUN_SUFFIXES)


def is_plural(word: str) -> bool:
    return word.endswith("oses") or (word.endswith("s") and not word.endswith(_SINGULAR_ONLY))


def singular(word: str) -> str:
    """Singular of a plural grouping word: dermatoses -> dermatosis, disorders -> disorder."""
    if word.endswith("oses"):
        return word[:-2] + "is"
    if word.endswith(("sses", "ches", "shes", "xes")):
        return word[:-2]
    if word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-1] if is_plural(word) else word


def singular_phrase(name: str) -> str:
    """A plural grouping name as one member: "bites and stings" -> "bite or sting",
    "dermatoses of pregnancy" -> "dermatosis of pregnancy"."""
    head, of, tail = name.partition(" of ")
    parts = head.split(" and ")
    if len(parts) == 2 and all(is_plural(p.split()[-1]) for p in parts if p.split()):
        head = " or ".join(_singular_last(p) for p in parts)
    else:
        head = _singular_last(head)
    return head + (of + tail if of else "")


def _singular_last(phrase: str) -> str:
    words = phrase.split()
    return " ".join([*words[:-1], singular(words[-1])]) if words else phrase


def with_article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def join_list(items: Sequence[str], conj: str = "and") -> str:
    """"a", "a and b", "a, b and c"."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {conj} " + items[-1]


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


# -- ontology caption ----------------------------------------------------------------------
class OntologyCaptioner:
    """One clause per disease label from its ontology path (and ``kind_of``)."""

    def __init__(self, ontology: Ontology) -> None:
        self.ontology = ontology

    def node_of(self, label: str) -> str | None:
        """The node a ``disease_labels`` entry names (its id, else a synonym lookup)."""
        if label in self.ontology.nodes and label != self.ontology.root:
            return label
        found = self.ontology.resolve(label)
        return found[0] if found else None

    def clause(self, node_id: str) -> str:
        """"allergic contact dermatitis, a form of contact dermatitis within eczema, a
        non-infectious inflammatory condition" (no capital, no full stop)."""
        onto = self.ontology
        path = onto.path(node_id)
        name = self._name(node_id)
        ancestors = [self._name(i) for i in path[:-1]]
        if not ancestors:
            return name
        category, rest = self._category(ancestors)
        parts = []
        kind_of = onto.nodes[node_id].kind_of
        kind_name = self._name(kind_of) if kind_of in onto.nodes else None
        group = rest[-1] if rest else None
        member_noun = self._member_noun(ancestors)
        if kind_name and kind_name != group:
            parts.append(f"a form of {kind_name}" + (f" within {self._group_as_place(group, member_noun)}" if group else ""))
        elif group:
            parts.append(self._group_as_member(group, member_noun))
        parts.append(category)
        return ", ".join([name, *parts])

    def _name(self, node_id: str) -> str:
        """A node's name as words: Derm1M's comma-joined names ("cysts, cyst") by their first part."""
        return self.ontology.name(node_id).split(", ")[0]

    def _category(self, ancestors: list[str]) -> tuple[str, list[str]]:
        """The top-level category ("a non-infectious inflammatory condition", "a malignant
        non-melanocytic proliferation", "a hair disease") and the ancestors it does not cover.

        The level-1 node plus the adjective-named groups right below it form the category;
        a group whose name is already part of a deeper one ("malignant" in "malignant
        non-melanocytic") is said once. An adjective with a noun of its own ("infectious" ->
        infection) ends the category: the groups below it are kinds of that noun.
        """
        top, below = ancestors[0], ancestors[1:]
        adjectives = [top] if is_adjective(top) else []
        noun = CATEGORY_NOUN if is_adjective(top) else singular_phrase(top)
        taken = 0
        for group in below:
            if not is_adjective(group) or any(n in adjectives for n in NOUN_OF_ADJECTIVE):
                break
            adjectives.append(group)
            taken += 1
        # The level-1 adjective stays next to the noun ("non-infectious inflammatory condition"),
        # the groups below it read from general to specific ("benign melanocytic"); a group named
        # inside a deeper one is said once ("malignant" in "premalignant").
        ordered = [*adjectives[1:], *adjectives[:1]] if is_adjective(top) else adjectives
        words = [a for a in ordered if not any(a != b and a in b for b in ordered)]
        return with_article(" ".join([*dict.fromkeys(words), noun])), below[taken:]

    @staticmethod
    def _member_noun(ancestors: list[str]) -> str:
        for name in reversed(ancestors):
            if name in NOUN_OF_ADJECTIVE:
                return NOUN_OF_ADJECTIVE[name]
        return CATEGORY_NOUN

    @staticmethod
    def _group_as_member(group: str, member_noun: str) -> str:
        """How a label relates to the group right above it: "a form of eczema", "a
        neurocutaneous syndrome", "a bacterial infection"."""
        if is_adjective(group):
            return with_article(f"{group} {member_noun}")
        if is_plural(group.partition(" of ")[0].split()[-1]):
            return with_article(singular_phrase(group))
        return f"a form of {group}"

    @staticmethod
    def _group_as_place(group: str, member_noun: str) -> str:
        """The group after "within": "eczema", "the neurocutaneous syndromes", "the viral infections"."""
        if is_adjective(group):
            return f"the {group} {member_noun}s"
        if is_plural(group.partition(" of ")[0].split()[-1]):
            return f"the {group}"
        return group

    def __call__(self, disease_labels: Sequence[str]) -> str | None:
        """Clauses for every label the ontology knows, or None when there is none."""
        clauses = []
        for label in disease_labels:
            node = self.node_of(label)
            if node is not None:
                clause = self.clause(node)
                if clause not in clauses:
                    clauses.append(clause)
        if not clauses:
            return None
        return capitalise("; ".join(clauses)) + "."


# -- concept caption -----------------------------------------------------------------------
@dataclass(frozen=True)
class ConceptWord:
    """How one concept is written: as an adjective, a countable/mass noun, and in which group."""

    name: str
    group: str
    text: str          # the form used in the caption ("brown", "erythematous", "bullae")
    adjective: bool
    noun: str | None = None  # an adjective's noun form, for captions without a morphology noun


_NOUN_FORM_SUFFIXES = ("ness", "ity", "ation", "cy", "osis", "ema")


def _noun_form(name: str, phrases: Sequence[str]) -> str | None:
    """An adjective concept as a noun, from the vocabulary: the SkinCon qualifier
    ("brown(hyperpigmentation)" -> hyperpigmentation), the name itself when it is a noun
    (erythema), or a one-word synonym with a noun ending (red -> redness, scaly -> scaliness)."""
    qualifier = re.search(r"\((.+?)\)", name)
    if qualifier:
        return qualifier[1]
    if name.endswith(_NOUN_SUFFIXES):
        return name
    return next((p for p in phrases if " " not in p and p.startswith(name[:4]) and p.endswith(_NOUN_FORM_SUFFIXES)),
                None)


def _display(name: str) -> str:
    """Derm1M's qualified names read as words: "brown(hyperpigmentation)" -> "brown",
    "warty/papillomatous" -> "warty", "flat topped" -> "flat-topped"."""
    text = re.sub(r"\(.*?\)", "", name).split("/")[0].strip()
    return "flat-topped" if text == "flat topped" else text


def _plural_from_vocab(name: str, phrases: Sequence[str]) -> str:
    """The plural the vocabulary lists for ``name`` (plaques, bullae, comedones, milia), else the
    name itself (mass nouns such as desquamation or atrophy; "tumors" is left out on purpose)."""
    guesses = [name + "s", name + "es", name[:-1] + "ies", name + "e", name[:-2] + "a", name + "nes"]
    for p in phrases:
        if p in guesses:
            return p
    return name


def concept_words(concepts: Sequence[Entry]) -> dict[str, ConceptWord]:
    """Each concept's written form, decided from its group and synonyms."""
    out = {}
    for e in concepts:
        text = _display(e.name)
        last = text.split()[-1]
        if e.group in ADJECTIVE_GROUPS:
            countable = _plural_from_vocab(e.name, e.phrases) != e.name
            if countable or last.endswith(_NOUN_SUFFIXES):
                # A noun in an adjective group: use its adjective form if the vocabulary has one
                # (erythema -> erythematous, xerosis -> xerotic), else keep it as a feature noun.
                stem = e.name[:5]
                adj = next((p for p in e.phrases if p.startswith(stem) and " " not in p and is_adjective(p)
                            and not p.endswith("ed")), None)
                if adj:
                    out[e.name] = ConceptWord(e.name, e.group, adj, True, _noun_form(e.name, e.phrases))
                else:
                    out[e.name] = ConceptWord(e.name, FEATURE_GROUP, _plural_from_vocab(e.name, e.phrases), False)
            else:
                out[e.name] = ConceptWord(e.name, e.group, text, True, _noun_form(e.name, e.phrases))
        elif e.group in (HEAD_GROUP, FEATURE_GROUP) and last.endswith("ed"):
            out[e.name] = ConceptWord(e.name, e.group, text, True)  # crusted, eroded, ulcerated
        elif e.group in (HEAD_GROUP, FEATURE_GROUP):
            out[e.name] = ConceptWord(e.name, e.group, _plural_from_vocab(e.name, e.phrases) if e.name == text else text,
                                      False)
        else:
            out[e.name] = ConceptWord(e.name, e.group, text, False)
    return out


def site_words(sites: Sequence[Entry]) -> dict[str, str]:
    """Each body site as a noun after "on the": adjective-named sites take their noun synonym
    ("oral" -> "oral mucosa", "acral" -> "acral skin")."""
    out = {}
    for e in sites:
        text = e.name
        if is_adjective(text) and " " not in text:
            text = next((p for p in e.phrases if p.startswith(text + " ")), f"{text} skin")
        out[e.name] = text
    return out


class ConceptCaptioner:
    """"The image shows <adjectives> <morphology> with <features> on the <sites>." plus
    dermoscopic structures, artefacts and released symptoms as short sentences."""

    def __init__(self, concepts: Sequence[Entry], sites: Sequence[Entry], symptoms: Sequence[Entry]) -> None:
        self.words = concept_words(concepts)
        self.sites = site_words(sites)
        self.released = {s.name for s in symptoms if s.release}

    def __call__(self, skin_concepts: Sequence[str], body_locations: Sequence[str],
                 symptom_list: Sequence[str] = ()) -> str | None:
        known = [self.words[c] for c in skin_concepts if c in self.words]
        sites = [self.sites.get(s, s) for s in body_locations]
        if not known and not sites:
            return None
        singular_ = any(w.name == "solitary" for w in known)
        ordered: list[ConceptWord] = []
        for group in (*ADJECTIVE_GROUPS, HEAD_GROUP, FEATURE_GROUP):
            ordered += [w for w in known if w.adjective and w.group == group and w not in ordered]
        adjectives = [w.text for w in ordered]
        heads = [w for w in known if not w.adjective and w.group == HEAD_GROUP]
        features = [w.text for w in known if not w.adjective and w.group == FEATURE_GROUP]
        structures = [w.text for w in known if w.group == STRUCTURE_GROUP]
        artefacts = [w.text for w in known if w.group == ARTEFACT_GROUP]
        sentences = []
        if not heads and ordered and all(w.noun for w in ordered):
            # No morphology noun to describe: say what the adjectives name ("redness",
            # "hyperpigmentation") rather than "brown skin", which reads as a skin tone.
            adjectives, features = [], [*dict.fromkeys(w.noun for w in ordered), *features]
            what = join_list(features)
        else:
            what = self._phrase(adjectives, heads, features, singular_)
        where = f"the {join_list(sites)}" if sites else ""
        if what and where:
            sentences.append(f"The image shows {what} on {where}.")
        elif what:
            sentences.append(f"The image shows {what}.")
        elif where:
            sentences.append(f"The image shows {where}.")
        if structures:
            sentences.append(f"Dermoscopic structures: {join_list(structures)}.")
        if artefacts:
            sentences.append(f"Also visible: {join_list(artefacts)}.")
        shown = [s for s in symptom_list if s in self.released]
        if shown and sentences:
            sentences.append(f"Symptoms: {join_list(shown)}.")
        return " ".join(sentences) or None

    def _phrase(self, adjectives: list[str], heads: list[ConceptWord], features: list[str], one: bool) -> str:
        adj = ", ".join(adjectives)
        if heads:
            nouns = [h.name if one else h.text for h in heads]
            noun = join_list([_display(n) for n in nouns])
            core = f"{adj} {noun}" if adj else noun
            if one:
                core = with_article(core)
        elif adj:
            core = f"{adj} lesions"
        else:
            return join_list(features)
        return core + (f" with {join_list(features)}" if features else "")
