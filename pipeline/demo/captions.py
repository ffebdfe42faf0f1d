"""Caption templates in the styles of Derm1M's five source kinds.

YouTube narration, PubMed figure captions, forum posts (with age, sex and history), public
dataset templates and textbook text. Each caption names a condition (sometimes by synonym,
abbreviation or plural), visual concepts, a body site, and sometimes a negated finding, so the
annotate stage has real work to do and the tests know the expected answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (condition as the ontology names it, ways captions may write it)
CONDITIONS: list[tuple[str, list[str]]] = [
    ("psoriasis", ["psoriasis", "plaque psoriasis"]),
    ("atopic dermatitis", ["atopic dermatitis", "atopic eczema"]),
    ("allergic contact dermatitis", ["allergic contact dermatitis"]),
    ("seborrhoeic keratosis", ["seborrheic keratosis", "seborrheic keratoses", "seborrhoeic keratosis"]),
    ("basal cell carcinoma", ["basal cell carcinoma", "BCC"]),
    ("squamous cell carcinoma", ["squamous cell carcinoma", "SCC"]),
    ("melanoma", ["melanoma", "malignant melanoma"]),
    ("melanocytic nevus", ["melanocytic nevus", "melanocytic naevus"]),
    ("actinic keratosis", ["actinic keratosis", "actinic keratoses"]),
    ("dermatofibroma", ["dermatofibroma"]),
    ("vitiligo", ["vitiligo"]),
    ("rosacea", ["rosacea"]),
    ("acne vulgaris", ["acne vulgaris"]),
    ("impetigo", ["impetigo"]),
    ("herpes zoster", ["herpes zoster", "shingles"]),
    ("urticaria", ["urticaria", "hives"]),
    ("lichen planus", ["lichen planus"]),
    ("scabies", ["scabies"]),
    ("molluscum contagiosum", ["molluscum contagiosum"]),
    ("bullous pemphigoid", ["bullous pemphigoid"]),
    ("pityriasis rosea", ["pityriasis rosea"]),
    ("cellulitis", ["cellulitis"]),
    ("keloid", ["keloid"]),
    ("kaposi sarcoma", ["kaposi sarcoma", "Kaposi's sarcoma"]),
    ("onychomycosis", ["onychomycosis"]),
    ("alopecia areata", ["alopecia areata"]),
]

CONCEPT_PHRASES: list[tuple[str, str]] = [
    ("red", "redness"), ("plaque", "plaques"), ("scale", "silvery scale"), ("papule", "papules"),
    ("macule", "macules"), ("nodule", "nodules"), ("vesicle", "vesicles"), ("pustule", "pustules"),
    ("crust", "crusts"), ("ulcer", "ulcers"), ("erosion", "erosions"), ("patch", "patches"),
    ("brown(hyperpigmentation)", "hyperpigmentation"), ("bulla", "bullae"), ("scar", "scars"),
]

SITES: list[str] = ["face", "scalp", "neck", "chest", "back", "abdomen", "arm", "forearm", "hand",
                    "finger", "leg", "knee", "foot", "ear", "nose", "lips"]

NEGATED_FINDINGS: list[tuple[str, str]] = [("ulcer", "There is no ulceration."),
                                           ("scale", "No scale is present."),
                                           ("bleeding", "It is not bleeding.")]


@dataclass(frozen=True)
class CaptionFacts:
    """What a caption states: the expected annotation of the caption."""

    condition: str
    condition_text: str
    concepts: tuple[str, ...]
    site: str
    age: int | None
    sex: str | None
    negated: str | None


def draw_facts(rng: np.random.Generator, style: str, condition: str | None = None) -> CaptionFacts:
    """Draw what one caption will say; ``condition`` pins the condition (copies of one image)."""
    if condition is None:
        cond, spellings = CONDITIONS[int(rng.integers(0, len(CONDITIONS)))]
    else:
        cond, spellings = next((c, s) for c, s in CONDITIONS if c == condition)
    picks = rng.choice(len(CONCEPT_PHRASES), size=int(rng.integers(1, 3)), replace=False)
    concepts = tuple(CONCEPT_PHRASES[int(i)][0] for i in sorted(picks))
    site = SITES[int(rng.integers(0, len(SITES)))]
    with_person = style in ("pubmed", "forum", "public")  # the styles whose template names a person
    age = int(rng.integers(2, 90)) if with_person else None
    sex = ("male", "female")[int(rng.integers(0, 2))] if with_person else None
    negated = None
    if rng.random() < 0.25:
        candidates = [n for n in NEGATED_FINDINGS if n[0] not in concepts]
        negated = candidates[int(rng.integers(0, len(candidates)))][0]
    return CaptionFacts(cond, spellings[int(rng.integers(0, len(spellings)))], concepts, site, age, sex, negated)


def _concept_text(facts: CaptionFacts) -> str:
    phrases = [p for c, p in CONCEPT_PHRASES if c in facts.concepts]
    return " and ".join(phrases)


def _person(facts: CaptionFacts, style: str) -> str:
    if facts.age is None or facts.sex is None:
        return "a patient"
    noun = {"male": "man", "female": "woman"}[facts.sex]
    if facts.age < 13:
        noun = {"male": "boy", "female": "girl"}[facts.sex]
    if style == "public":
        noun = f"{facts.sex} patient"
    return f"a {facts.age}-year-old {noun}"


def _negation(facts: CaptionFacts) -> str:
    if facts.negated is None:
        return ""
    return " " + dict(NEGATED_FINDINGS)[facts.negated]


def render_caption(style: str, facts: CaptionFacts, rng: np.random.Generator) -> tuple[str, str]:
    """Return (caption, context) for one record in the given source style."""
    c, ctext, site = facts.condition, facts.condition_text, facts.site
    concepts = _concept_text(facts)
    person = _person(facts, style)
    if style == "youtube":
        opener = ["So here you can see", "Now in this one we have", "Okay, look at"][int(rng.integers(0, 3))]
        caption = (f"{opener} {concepts} on the {site}, which is really typical of {ctext}."
                   f"{_negation(facts)} Treatment usually starts with topical therapy.")
        if rng.random() < 0.3:  # long narration: more than the text encoder's 77 tokens
            caption += (" And I always tell my residents, when you see this kind of picture in clinic, take a"
                        " careful history, ask about triggers, medications, family history and previous"
                        " treatments, because the course of the disease and the response to therapy will"
                        " guide you, and always consider a biopsy, dermoscopy and cultures, whenever the"
                        " presentation is atypical or it does not respond as expected.")
        context = f"Dermatology lecture: recognising {c}"
    elif style == "pubmed":
        fig = int(rng.integers(1, 7))
        caption = (f"Figure {fig}. Clinical photograph of {person} showing {concepts} on the {site}, "
                   f"consistent with {ctext}.{_negation(facts)}")
        context = f"A case report of {c} with atypical presentation"
    elif style == "forum":
        pron = {"male": "his", "female": "her", None: "their"}[facts.sex]
        caption = (f"My {facts.age} year old {'son' if facts.sex == 'male' else 'daughter'} has had "
                   f"{concepts} on {pron} {site} for three weeks and it keeps getting worse. "
                   f"Doctor's reply: this looks like {ctext}.{_negation(facts)}")
        context = "Help: what is this rash?"
    elif style == "public":
        caption = (f"This is a dermoscopic image of {ctext} on the {site} of {person}. "
                   f"The lesion shows {concepts}.")
        context = ""
    elif style == "textbook":
        caption = (f"{ctext[0].upper() + ctext[1:]}: {concepts} on the {site}.{_negation(facts)} "
                   f"Note the typical distribution of the lesions.")
        context = f"Chapter: {c}"
    else:
        raise ValueError(f"unknown caption style {style!r}")
    return caption, context


STYLES: dict[str, tuple[str, str]] = {
    # style: (Derm1M-like source name, source_type)
    "youtube": ("youtube", "edu"),
    "pubmed": ("pubmed", "knowledge"),
    "forum": ("forum", "forum"),
    "public": ("public", "knowledge"),
    "textbook": ("textbook", "knowledge"),
}
