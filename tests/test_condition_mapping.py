"""Condition mapping beyond single mentions: the diagnosis among several conditions, signs,
structured dataset labels, and mapping onto Derm1M's own ontology through the crosswalk."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.text.agreement import label_set, names_condition, score
from pipeline.text.annotator import Annotator
from pipeline.text.crosswalk import build_crosswalk, lent_terms
from pipeline.text.ontology import Node, Ontology, project_ontology
from pipeline.text.vocab import load_body_sites, load_concepts, load_symptoms

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
VOCAB = {k: REPO / "ontology" / f"{k}.yaml" for k in ("concepts", "body_sites", "symptoms")}


@pytest.fixture(scope="module")
def ours() -> Annotator:
    return Annotator(project_ontology(), load_concepts(VOCAB["concepts"]), load_body_sites(VOCAB["body_sites"]),
                     load_symptoms(VOCAB["symptoms"]))


@pytest.fixture(scope="module")
def derm1m() -> Annotator:
    """Target: Derm1M's released ontology.json; our synonyms lent through the crosswalk."""
    if not SHARED.exists():
        pytest.skip("../shared reference data is not present")
    return Annotator(Ontology.load(SHARED / "reference/derm1m/ontology.json"), load_concepts(VOCAB["concepts"]), [], [],
                     reference=project_ontology(), conditions_only=True)


# -- which condition is the diagnosis --------------------------------------------------------

@pytest.mark.parametrize(("caption", "labels", "others"), [
    # The subject comes first; complications and comparisons are kept apart.
    ("This image discusses orbital cellulitis, which can lead to a brain abscess.", ["cellulitis"], ["abscess"]),
    ("Atrophic dermatofibroma, with a seborrheic keratosis beside it on dermoscopy.",
     ["dermatofibroma"], ["seborrhoeic keratosis"]),
    # A prose list gives examples; the first is the label.
    ("This toxin can cause skin diseases such as urticaria and eczema.", ["urticaria"], ["eczema"]),
    # Juxtaposed names, as in dataset class names, are one multi-label diagnosis.
    ("This is a clinical skin image, diagnosed as tinea ringworm candidiasis and other fungal infections.",
     ["tinea", "candidiasis"], []),
    ("diagnosed as psoriasis pictures lichen planus and related diseases.", ["psoriasis", "lichen planus"], []),
    # A finding is the label only when no disease is named.
    ("A scar after excision of a basal cell carcinoma.", ["basal cell carcinoma"], ["scar"]),
    ("Hyperpigmentation on the back, consistent with actinic keratoses.", ["actinic keratosis"], ["hyperpigmentation"]),
    ("A hypertrophic scar on the chest.", ["hypertrophic scar"], []),
])
def test_diagnosis_is_the_captions_subject(ours: Annotator, caption: str, labels: list[str], others: list[str]) -> None:
    ann = ours(caption)
    assert (ann.disease_labels, ann.other_labels) == (labels, others)


def test_negation_cues_excluding(ours: Annotator) -> None:
    ann = ours("The poster has vitiligo. Participants suggested excluding pityriasis versicolor.")
    assert ann.disease_labels == ["vitiligo"]
    assert ann.negated_labels == ["pityriasis versicolor"]


# -- signs -----------------------------------------------------------------------------------

def test_signs_label_only_when_nothing_is_named(ours: Annotator) -> None:
    ann = ours("A large herald patch on the trunk, followed by smaller oval patches.")
    assert (ann.disease_labels, ann.label_source) == (["pityriasis rosea"], "sign")
    assert ann.hierarchical[-1] == "pityriasis rosea"
    # A named condition always wins over a sign.
    ann = ours("Plaque psoriasis with silvery scale; a herald patch was absent.")
    assert (ann.disease_labels, ann.label_source) == (["plaque psoriasis"], "caption")
    # A negated sign is no evidence.
    ann = ours("There is no herald patch.")
    assert (ann.disease_labels, ann.label_source) == ([], "none")


def test_a_sign_outranks_a_finding(ours: Annotator) -> None:
    ann = ours("Dark ground microscopy of Treponema pallidum, causing a painless ulcer.")
    assert (ann.disease_labels, ann.other_labels, ann.label_source) == (["syphilis"], ["ulcer"], "sign")


def test_context_outranks_a_sign(ours: Annotator) -> None:
    ann = ours("A herald patch on the trunk.", context="Guttate psoriasis in a teenager")
    assert (ann.disease_labels, ann.label_source) == (["guttate psoriasis"], "context")


# -- structured dataset labels ----------------------------------------------------------------

HAM10000_DX = {"akiec": "actinic keratosis", "bcc": "basal cell carcinoma", "bkl": "benign keratosis",
               "df": "dermatofibroma", "mel": "melanoma", "nv": "melanocytic nevus", "vasc": "benign vascular"}
DERM7PT = {"clark nevus": "dysplastic nevus", "melanoma (less than 0.76 mm)": "melanoma",
           "reed or spitz nevus": "spitz nevus", "melanoma (in situ)": "melanoma in situ",
           "seborrheic keratosis": "seborrhoeic keratosis", "dermal nevus": "intradermal nevus",
           "vascular lesion": "benign vascular", "blue nevus": "blue nevus", "lentigo": "lentigo",
           "congenital nevus": "congenital melanocytic nevus", "melanoma metastasis": "metastatic melanoma"}
# Class names as Fitzpatrick17k writes them (typos included).
FITZPATRICK17K = {"papilomatosis confluentes and reticulate": "confluent and reticulated papillomatosis",
                  "erythema annulare centrifigum": "erythema annulare centrifugum",
                  "basal cell carcinoma morpheiform": "morphoeic basal cell carcinoma",
                  "pediculosis lids": "pediculosis palpebrarum", "fixed eruptions": "fixed drug eruption",
                  "acquired autoimmune bullous diseaseherpes gestationis": "pemphigoid gestationis",
                  "sun damaged skin": "actinic damage", "granuloma pyogenic": "pyogenic granuloma",
                  "stevens johnson syndrome": "stevens-johnson syndrome", "dariers disease": "darier disease",
                  "telangiectases": "telangiectasia", "xanthomas": "xanthoma"}


@pytest.mark.parametrize(("dataset", "table"), [("ham10000", HAM10000_DX), ("derm7pt", DERM7PT),
                                                 ("fitzpatrick17k", FITZPATRICK17K)])
def test_structured_labels_map_through_the_synonym_index(ours: Annotator, dataset: str, table: dict) -> None:
    assert {label: ours.map_label(label) for label in table} == {label: [node] for label, node in table.items()}
    assert ours.map_label("miscellaneous") == []


def test_every_dermnet_folder_maps(ours: Annotator, shared: Path) -> None:
    folders = sorted(p.name for p in (shared / "corpus/dermnet").iterdir() if p.is_dir())
    assert len(folders) == 123
    assert [f for f in folders if not ours.map_label(f)] == []


def test_source_label_is_the_diagnosis_when_it_maps(ours: Annotator) -> None:
    ann = ours("A dermoscopic image of a lesion on the back; melanoma was ruled out.", source_label="nv")
    assert (ann.disease_labels, ann.label_source) == (["melanocytic nevus"], "source_label")
    assert ann.negated_labels == ["melanoma"]
    ann = ours("Plaque psoriasis on the elbow.", source_label="no definitive diagnosis")
    assert (ann.disease_labels, ann.label_source) == (["plaque psoriasis"], "caption")


# -- Derm1M's ontology as the target ----------------------------------------------------------

@pytest.mark.parametrize(("caption", "label"), [
    ("HSV on the lower lip.", "herpes simplex virus"),              # our abbreviation, lent
    ("Herpetic whitlow after a dental exam.", "herpes simplex virus"),   # kind_of herpes simplex
    ("A nodular melanoma on the back.", "malignant melanoma, melanoma"),  # coarser target node
    ("Multiple seborrheic keratoses on the back.", "seborrheic keratoses"),   # Derm1M's own node
    ("Anal ulcers are painful open sores.", "ulcer"),                # descendant beats parent's synonym
    ("Warts on the fingers.", "skin diseases caused by warts"),
    ("A scar and urticaria on the arm.", "urticaria"),               # a disease, though Derm1M files it as a reaction pattern
    ("caused by a bacterial infection that can be treated with antibiotics.", "no definitive diagnosis"),
])
def test_mapping_onto_derm1m_ontology(derm1m: Annotator, caption: str, label: str) -> None:
    assert derm1m(caption).release_row()["disease_label"] == label


def test_crosswalk_maps_exact_then_coarse(shared: Path) -> None:
    ref, target = project_ontology(), Ontology.load(shared / "reference/derm1m/ontology.json")
    walk = build_crosswalk(ref, target)
    assert walk.exact["basal cell carcinoma"] == "basal cell carcinoma"
    assert walk.exact["malignant non-melanocytic"] == "malignant > non-melanocytic"
    assert walk.coarse["nodular melanoma"] == "malignant melanoma, melanoma"
    assert walk.coarse["herpetic whitlow"] == "herpes simplex virus"
    assert "genital herpes" not in walk.exact
    # Bare-adjective groupings never receive terms ("bacterial infection" is not a diagnosis).
    lent = lent_terms(ref, target, walk)
    assert "bacterial" not in lent and "infectious" not in lent
    assert "HSV" in lent["herpes simplex virus"][1]


def test_crosswalk_on_a_small_pair() -> None:
    ref = Ontology("root")
    ref.add(Node("infections", "root"))
    ref.add(Node("herpes simplex", "infections", ["cold sore"], ["HSV"]))
    ref.add(Node("herpetic whitlow", "infections", kind_of="herpes simplex"))
    target = Ontology("root")
    target.add(Node("viral", "root"))
    target.add(Node("herpes simplex virus", "viral", ["herpes simplex"]))
    walk = build_crosswalk(ref, target, min_level=1)
    assert walk.exact == {"herpes simplex": "herpes simplex virus"}
    assert walk.coarse == {"herpetic whitlow": "herpes simplex virus"}
    assert lent_terms(ref, target, walk) == {"herpes simplex virus": (["cold sore", "herpetic whitlow"], ["HSV"])}


# -- the agreement measure itself ---------------------------------------------------------------

def test_label_sets_parse_comma_joined_names(shared: Path) -> None:
    onto = Ontology.load(shared / "reference/derm1m/ontology.json")
    assert label_set(onto, "candidiasis, tinea") == {"candidiasis", "tinea"}
    assert label_set(onto, "Tinea, Candidiasis") == {"candidiasis", "tinea"}
    assert label_set(onto, "nail diseases, nail disease") == {"nail diseases, nail disease"}
    assert label_set(onto, "no definitive diagnosis") == frozenset()
    assert names_condition(onto, "Multiple seborrheic keratoses", label_set(onto, "seborrheic keratoses"))
    assert not names_condition(onto, "red inflamed patches", label_set(onto, "psoriasis"))


def test_score_counts_rows_levels_and_no_diagnosis(derm1m: Annotator) -> None:
    rows = [("Psoriasis on the elbow.", "psoriasis"), ("Guttate psoriasis.", "psoriasis"),
            ("Front view.", "no definitive diagnosis"), ("Front view.", "eczema"), ("Eczema.", "no definitive diagnosis")]
    rep = score(derm1m, rows)
    # "Guttate psoriasis" is Derm1M's own, finer node: a disagreement, counted apart as finer.
    assert (rep.rows, rep.agree, rep.named_rows, rep.named_agree, rep.finer) == (5, 2, 2, 1, 1)
    assert (rep.ndd_tp, rep.ndd_fp, rep.ndd_fn) == (1, 1, 1)
    assert rep.level_total[1] == 3 and rep.level_agree[1] == 2


# -- issue 18: hedging, story cues, vocabulary, cue scope --------------------------------------

@pytest.mark.parametrize(("caption", "label"), [
    ("This could be psoriasis or eczema.", "psoriasis"),
    ("The rash might be lichen planus.", "lichen planus"),
    ("Potentially a melanoma on the back.", "melanoma"),
    ("Tinea and candidiasis were considered.", "tinea"),
    ("A lesion that is likely a dermatofibroma.", "dermatofibroma"),
])
def test_hedged_diagnosis_labels_first_hedged_condition(ours: Annotator, caption: str, label: str) -> None:
    """Nothing affirmed: the first hedged condition is the label (label_source hedged)."""
    ann = ours(caption)
    assert (ann.disease_labels, ann.label_source) == ([label], "hedged")
    assert label in ann.differential_labels


def test_affirmed_condition_beats_hedged_one(ours: Annotator) -> None:
    ann = ours("A basal cell carcinoma on the nose; melanoma was considered.")
    assert (ann.disease_labels, ann.label_source, ann.differential_labels) == (["basal cell carcinoma"], "caption",
                                                                                 ["melanoma"])


@pytest.mark.parametrize(("caption", "label", "context"), [
    ("Misdiagnosed as eczema for years, she was finally diagnosed with mycosis fungoides.", "mycosis fungoides", "eczema"),
    ("A man with a history of psoriasis; the diagnosis is lichen planus.", "lichen planus", "psoriasis"),
    ("Plaques resembling psoriasis on the elbows of a child with pityriasis rubra pilaris.", "pityriasis rubra pilaris",
     "psoriasis"),
    ("Psoriasis-like plaques in a patient with tinea corporis.", "tinea corporis", "psoriasis"),
])
def test_story_final_diagnosis_cue_and_context_mentions(ours: Annotator, caption: str, label: str, context: str) -> None:
    """The condition after the final diagnosis cue is the label; conditions named as history,
    misdiagnosis or comparison are context (other_labels)."""
    ann = ours(caption)
    assert ann.disease_labels == [label]
    assert context in ann.other_labels


@pytest.mark.parametrize(("caption", "label"), [
    ("Onychomycotic nails of both big toes.", "onychomycosis"),
    ("Scabietic burrows between the fingers.", "scabies"),
    ("A syphilitic rash on the palms.", "syphilis"),
    ("Ulceration of the lower lip.", "ulcer"),
    ("Purple plaques consistent with Kaposi-sarcoma.", "kaposi sarcoma"),
    ("A squamous carcinoma of the lower lip.", "squamous cell carcinoma"),
])
def test_adjective_forms_and_synonyms_of_condition_names(ours: Annotator, caption: str, label: str) -> None:
    """Adjective (-otic, -itic, -ietic), hyphen-joined and synonym forms name the condition."""
    assert ours(caption).disease_labels == [label]


@pytest.mark.parametrize("caption", [
    "A red rash caused by an allergic reaction to nickel in a belt buckle.",
    "Itchy patches, likely caused by an allergic reaction to a specific substance.",
    "A clinical photograph of allergy to hair dye.",
])
def test_allergic_reaction_to_a_substance_is_contact_dermatitis(ours: Annotator, caption: str) -> None:
    assert ours(caption).disease_labels == ["contact dermatitis"]


@pytest.mark.parametrize("caption", [
    "This may indicate an inflammatory skin disease.",
    "Treated with anti-inflammatory creams.",
    "A benign growth on the arm.",
])
def test_bare_grouping_adjective_is_never_a_label(ours: Annotator, caption: str) -> None:
    assert ours(caption).disease_labels == []


@pytest.mark.parametrize(("caption", "status", "label"), [
    ("Biopsy was done, ruling out melanoma.", "negated", "melanoma"),
    ("Not excluding melanoma, a biopsy was taken.", "differential", "melanoma"),
    ("Possible diagnoses include lichen planus and neurodermatitis.", "differential", "lichen simplex chronicus"),
    ("No psoriasis, eczema or tinea was found.", "negated", "tinea"),
])
def test_negation_and_hedging_cue_scope(ours: Annotator, caption: str, status: str, label: str) -> None:
    """'ruling out' negates, 'not excluding' hedges, and a cue covers every member of a list."""
    ann = ours(caption)
    found = ann.negated_labels if status == "negated" else ann.differential_labels
    assert label in found and label not in ann.other_labels


@pytest.mark.parametrize(("caption", "absent"), [
    ("Psoriasis plaques on the elbows; it can also be present on the scalp.", "scalp"),
    ("An eruption on the trunk that spares the face.", "face"),
])
def test_generic_statement_and_spared_site_are_not_findings(ours: Annotator, caption: str, absent: str) -> None:
    ann = ours(caption)
    assert absent not in ann.sites and ann.sites


def test_generic_statement_concepts_are_not_findings(ours: Annotator) -> None:
    ann = ours("A red plaque of psoriasis. Psoriasis can present as pustules.")
    assert "plaque" in ann.concepts and "pustule" not in ann.concepts


def test_erysipelas_maps_to_cellulitis_in_derm1m(derm1m: Annotator) -> None:
    """A node the target lacks falls back to its kind_of (erysipelas is a superficial cellulitis)."""
    assert [derm1m.ontology.name(x) for x in derm1m.diagnose("Erysipelas of the lower leg.").labels] == ["cellulitis"]


@pytest.mark.parametrize(("folder", "node"), [
    ("Milker_s nodule", "milker's nodule"),
    ("Becker_s naevus", "becker nevus"),
    ("Darier_s disease", "darier disease"),
])
def test_folder_name_possessive_written_with_underscore(ours: Annotator, folder: str, node: str) -> None:
    """Folder names write "'s" as "_s"; the structured label maps like the possessive."""
    assert ours.map_label(folder) == [node]


def test_hedged_finding_is_not_a_hedged_diagnosis(ours: Annotator) -> None:
    """Only a hedged disease becomes the label; a finding joined by "or" stays a differential."""
    ann = ours("A pink or brown papule, shiny or waxy with telangiectasia.")
    assert ann.disease_labels == [] and ann.label_source != "hedged"
