"""Caption text in the styles of Derm1M's five source kinds, as each kind's raw layout holds it.

YouTube narration (transcript sentences around a keyframe), PubMed figure captions (single and
compound, panel by panel), forum posts and their replies (with age, sex and history), and
textbook captions. Public-dataset captions are not written here: the ``public_dataset``
adapter builds them from the metadata row, so the generator draws facts its template states.
Each caption names a condition (sometimes by synonym, abbreviation or plural), visual concepts,
a body site, and sometimes a negated finding, so the annotate stage has real work to do and the
tests know the expected answer. Every caption is a full dermatology sentence of well over three
words, so caption filters (too short, not dermatology) keep it.
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
    """Draw what one caption will say; ``condition`` pins the condition (copies of one image).

    ``style`` is the source kind (video, pmc, forum, textbook): pmc and forum text names a person.
    """
    if condition is None:
        cond, spellings = CONDITIONS[int(rng.integers(0, len(CONDITIONS)))]
    else:
        cond, spellings = next((c, s) for c, s in CONDITIONS if c == condition)
    picks = rng.choice(len(CONCEPT_PHRASES), size=int(rng.integers(1, 3)), replace=False)
    concepts = tuple(CONCEPT_PHRASES[int(i)][0] for i in sorted(picks))
    site = SITES[int(rng.integers(0, len(SITES)))]
    with_person = style in ("pmc", "forum", "public")  # the kinds whose text names a person
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


def _person(facts: CaptionFacts) -> str:
    if facts.age is None or facts.sex is None:
        return "a patient"
    noun = {"male": "man", "female": "woman"}[facts.sex]
    if facts.age < 18:
        noun = {"male": "boy", "female": "girl"}[facts.sex]
    return f"a {facts.age}-year-old {noun}"


def _negation(facts: CaptionFacts) -> str:
    if facts.negated is None:
        return ""
    return " " + dict(NEGATED_FINDINGS)[facts.negated]


LONG_NARRATION = [  # appended to some narrations: more than the text encoder's 77 tokens
    "And I always tell my residents, when you see this kind of picture in clinic, take a careful history,"
    " ask about triggers, medications, family history and previous treatments, because the course of the"
    " disease and the response to therapy will guide you.",
    "Always consider a biopsy, dermoscopy and cultures whenever the presentation is atypical or the skin"
    " does not respond as expected.",
]


# Speech between keyframes: in the transcript, never in a frame's caption.
VIDEO_INTRO = "Welcome back to the channel. Today we are going through some skin cases from clinic."
FILLER_SENTENCES = ["Let's move on to the next case.", "Keep that picture in mind for the quiz at the end.",
                    "Right, next slide."]


def video_sentences(facts: CaptionFacts, rng: np.random.Generator) -> list[str]:
    """What the narrator says while a keyframe is on screen: one transcript cue per sentence."""
    opener = ["So here you can see", "Now in this one we have", "Okay, look at"][int(rng.integers(0, 3))]
    sentences = [f"{opener} {_concept_text(facts)} on the {facts.site}, which is really typical of "
                 f"{facts.condition_text}."]
    if facts.negated is not None:
        sentences.append(dict(NEGATED_FINDINGS)[facts.negated])
    sentences.append("Treatment usually starts with topical therapy.")
    if rng.random() < 0.3:
        sentences.extend(LONG_NARRATION)
    return sentences


def figure_caption(facts: CaptionFacts, figure: int) -> str:
    """A PubMed-style caption of a single-image figure."""
    return (f"Figure {figure}. Clinical photograph of {_person(facts)} showing {_concept_text(facts)} on the "
            f"{facts.site}, consistent with {facts.condition_text}.{_negation(facts)}")


def panel_subcaption(facts: CaptionFacts) -> str:
    """One panel's text inside a compound caption ("(A) A 45-year-old man with ...")."""
    person = _person(facts)
    return (f"{person[0].upper() + person[1:]} with {_concept_text(facts)} on the {facts.site}, consistent with "
            f"{facts.condition_text}.{_negation(facts)}")


def forum_post(facts: CaptionFacts, n_images: int) -> tuple[str, str]:
    """(post body, the text-only reply that names the condition)."""
    photos = " I attached a few photos." if n_images > 1 else ""
    if facts.age is not None and facts.age >= 18:  # adults write about themselves, parents about a child
        who = f"I am a {facts.age} year old {'man' if facts.sex == 'male' else 'woman'} and I have"
        pron = "my"
    else:
        who = f"My {facts.age} year old {'son' if facts.sex == 'male' else 'daughter'} has"
        pron = {"male": "his", "female": "her", None: "their"}[facts.sex]
    body = (f"{who} had {_concept_text(facts)} on {pron} {facts.site} for three weeks and it keeps getting "
            f"worse.{photos}")
    return body, f"Doctor here: this looks like {facts.condition_text}.{_negation(facts)}"


FORUM_TITLES = ["Help: what is this rash?", "Spots that will not go away", "Should I be worried about this skin?",
                "Rash getting worse after three weeks", "Is this contagious?"]

# Real forum posts in other languages (language flagged by the forum adapter, text kept as written).
NON_ENGLISH_POSTS: list[dict] = [
    {"language": "es", "condition": "psoriasis", "title": "Manchas rojas con escamas en los codos",
     "body": "Hola, desde hace dos meses tengo placas rojas con escamas blancas en los codos y las rodillas, "
             "y me pican mucho por la noche. ¿Alguien sabe si puede ser psoriasis?",
     "reply": "Parece psoriasis en placas. Lo mejor es que te vea un dermatólogo para empezar un tratamiento."},
    {"language": "fr", "condition": "atopic dermatitis", "title": "Plaques rouges sur les joues de mon fils",
     "body": "Bonjour, mon fils de quatre ans a des plaques rouges et sèches sur les joues et dans les plis des "
             "coudes depuis trois semaines. Il se gratte sans arrêt. Est-ce de l'eczéma ?",
     "reply": "Cela ressemble à une dermatite atopique. Il faut bien hydrater la peau et consulter un médecin."},
    {"language": "de", "condition": "herpes zoster", "title": "Schmerzhafter Ausschlag am Rücken",
     "body": "Hallo, ich habe seit einer Woche einen brennenden, schmerzhaften Ausschlag mit kleinen Bläschen "
             "auf der rechten Seite des Rückens. Könnte das eine Gürtelrose sein?",
     "reply": "Das sieht nach Gürtelrose (Herpes zoster) aus. Bitte gehen Sie bald zum Hautarzt."},
]


def textbook_caption(facts: CaptionFacts) -> str:
    """An atlas-style caption: condition first, then what the image shows."""
    ctext = facts.condition_text
    return (f"{ctext[0].upper() + ctext[1:]}: {_concept_text(facts)} on the {facts.site}.{_negation(facts)} "
            f"Note the typical distribution of the lesions.")


# The public source's diagnoses (PAD-UFES-20 codes, as the public_dataset adapter names them)
# -> the condition the ontology calls it, and the regions its metadata uses that are body sites.
PAD_CONDITIONS: dict[str, str] = {"ACK": "actinic keratosis", "BCC": "basal cell carcinoma", "MEL": "melanoma",
                                  "NEV": "melanocytic nevus", "SCC": "squamous cell carcinoma",
                                  "SEK": "seborrhoeic keratosis"}
PAD_REGIONS: list[str] = ["face", "scalp", "neck", "chest", "back", "abdomen", "arm", "forearm", "hand", "foot",
                          "ear", "nose"]


def draw_public_facts(rng: np.random.Generator, code: str) -> CaptionFacts:
    """What the public_dataset adapter's template will state for a PAD-UFES-20 row with ``code``."""
    from pipeline.sources.public_dataset import PAD_UFES_NAMES

    site = PAD_REGIONS[int(rng.integers(0, len(PAD_REGIONS)))]
    age = int(rng.integers(20, 90))
    sex = ("male", "female")[int(rng.integers(0, 2))]
    return CaptionFacts(PAD_CONDITIONS[code], PAD_UFES_NAMES[code], (), site, age, sex, None)
