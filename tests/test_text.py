"""Text side: the condition ontology, caption annotation, demographics and caption truncation.

Everything runs on the repository's real vocabularies (``ontology/*.yaml``) with real spaCy,
owlready2 and open_clip; nothing is mocked.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.text.annotator import (
    NO_AGE,
    NO_CONCEPTS,
    NO_DIAGNOSIS,
    NO_GENDER,
    NO_LOCATION,
    NO_SYMPTOMS,
    Annotator,
    condition_variants,
    is_grouping_adjective,
)
from pipeline.text.demographics import extract_age, extract_sex, extract_skin_type
from pipeline.text.ontology import Node, Ontology
from pipeline.text.truncate import CaptionTruncator
from pipeline.text.vocab import load_symptoms

REPO = Path(__file__).resolve().parents[1]
CONDITIONS = REPO / "ontology" / "conditions.yaml"
VOCAB = {name: REPO / "ontology" / f"{name}.yaml" for name in ("concepts", "body_sites", "symptoms")}


@pytest.fixture(scope="module")
def onto() -> Ontology:
    return Ontology.from_yaml(CONDITIONS)


@pytest.fixture(scope="module")
def annotator() -> Annotator:
    return Annotator.from_paths(CONDITIONS, VOCAB["concepts"], VOCAB["body_sites"], VOCAB["symptoms"])


@pytest.fixture(scope="module")
def truncator() -> CaptionTruncator:
    return CaptionTruncator("ViT-B-16", 77)


def _dump(o: Ontology) -> dict:
    """Every node's parent, synonyms (as a set), abbreviations (as a set) and ICD-10 code."""
    return {n: (v.parent, sorted(v.synonyms), sorted(v.abbreviations), v.icd10) for n, v in o.nodes.items()}


def _dev_row_paths(shared: Path) -> dict[str, str]:
    with (shared / "reference/derm1m/dev_rows.csv").open(encoding="utf-8", newline="") as fh:
        return {r["disease_label"]: r["hierarchical_disease_label"] for r in csv.DictReader(fh)}


# -- ontology ---------------------------------------------------------------------------------

def test_repo_ontology_has_no_problems(onto: Ontology) -> None:
    """The hand-edited conditions.yaml stays a clean tree with no term claimed by two nodes."""
    assert onto.root == "skin condition"
    assert len(onto.nodes) > 500
    assert onto.check() == []


def test_repo_ontology_depth_at_most_four(onto: Ontology) -> None:
    """The file's own rule: no node deeper than level 4; every path ends at its node."""
    depths = {n.name: len(onto.path(n.name)) for n in onto.walk()}
    assert max(depths.values()) == 4
    assert min(depths.values()) == 1
    assert onto.path("impetigo") == ["inflammatory", "infectious", "bacterial", "impetigo"]
    for name in depths:
        assert onto.path(name)[-1] == name


def test_ontology_check_reports_shared_terms() -> None:
    """check() names a synonym claimed by two nodes (the guard behind the clean-file test)."""
    o = Ontology("root")
    o.add(Node("a", "root", ["shared term"]))
    o.add(Node("b", "root", ["Shared Term"]))
    assert len(o.check()) == 1
    assert o.check()[0].startswith("term 'shared term' is claimed by 2 nodes: ['a', 'b']")
    o.ambiguous = {"shared term"}
    assert o.check() == []
    assert o.lookup("shared term") == ["a", "b"]
    o.ambiguous = {"shared term", "unused"}
    assert o.check() == ["term 'unused' is listed as ambiguous but is claimed by fewer than two nodes"]


def test_ontology_check_reports_bad_kind_of() -> None:
    """kind_of must name an existing node that is not a descendant."""
    o = Ontology("root")
    o.add(Node("a", "root"))
    o.add(Node("b", "a", kind_of="nowhere"))
    o.add(Node("c", "a"))
    o.nodes["a"].kind_of = "c"
    assert o.check() == ["node 'a': kind_of 'c' is its own descendant", "node 'b': kind_of 'nowhere' is not a node"]


def test_ontology_add_rejects_duplicates_and_unknown_parents() -> None:
    """Names are unique and parents must exist first, else a PipelineError (not a broken tree)."""
    o = Ontology("root")
    o.add(Node("a", "root"))
    with pytest.raises(PipelineError, match="defined twice"):
        o.add(Node("a", "root"))
    with pytest.raises(PipelineError, match="not defined before"):
        o.add(Node("c", "missing"))


def test_ontology_load_errors(tmp_path: Path) -> None:
    """A missing file or an unknown suffix is a user error naming the fix."""
    with pytest.raises(PipelineError, match="not found"):
        Ontology.load(tmp_path / "nope.owl")
    bad = tmp_path / "onto.txt"
    bad.write_text("x", encoding="utf-8")
    with pytest.raises(PipelineError, match="unknown ontology format '.txt'"):
        Ontology.load(bad)


def test_yaml_owl_roundtrip(onto: Ontology, tmp_path: Path) -> None:
    """YAML -> OWL -> load keeps every node, parent, child order, path, synonym and code."""
    owl = tmp_path / "onto.owl"
    onto.to_owl(owl)
    back = Ontology.load(owl)
    assert back.root == onto.root
    assert _dump(back) == _dump(onto)
    assert back.children == onto.children
    assert [back.path(n.name) for n in back.walk()] == [onto.path(n.name) for n in onto.walk()]
    assert sorted(back.terms()) == sorted(onto.terms())
    assert back.nodes["basal cell carcinoma"].abbreviations == ["BCC"]
    assert back.nodes["impetigo"].icd10 == "L01.0"


def test_owl_written_twice_is_byte_identical(onto: Ontology, tmp_path: Path) -> None:
    """Two writes in one process give the same bytes (DVC hashes the OWL output)."""
    onto.to_owl(tmp_path / "a.owl")
    onto.to_owl(tmp_path / "b.owl")
    assert (tmp_path / "a.owl").read_bytes() == (tmp_path / "b.owl").read_bytes()


def test_yaml_owl_roundtrip_keeps_synonym_order(onto: Ontology, tmp_path: Path) -> None:
    """The OWL should list synonyms in the YAML's order, so the round trip is exact."""
    onto.to_owl(tmp_path / "onto.owl")
    back = Ontology.load(tmp_path / "onto.owl")
    assert back.nodes["infectious"].synonyms == onto.nodes["infectious"].synonyms
    assert {n: v.synonyms for n, v in back.nodes.items()} == {n: v.synonyms for n, v in onto.nodes.items()}


def test_owl_bytes_do_not_depend_on_hash_seed(tmp_path: Path) -> None:
    """The OWL built by `derm1m ontology build` must be identical across processes."""
    script = "import sys; from pathlib import Path; from pipeline.text.ontology import Ontology; " \
             "Ontology.from_yaml(Path(sys.argv[1])).to_owl(sys.argv[2])"
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"seed{seed}.owl"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", script, str(CONDITIONS), str(out)], check=True, env=env, cwd=REPO)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_lookup_synonyms_and_case_sensitive_abbreviations(onto: Ontology) -> None:
    """Names/synonyms match case-insensitively; abbreviations only exactly as written."""
    assert onto.lookup("BCC") == ["basal cell carcinoma"]
    assert onto.lookup("SCC") == ["squamous cell carcinoma"]
    assert onto.lookup("scc") == []
    assert onto.lookup("Scc") == []
    # "bcc" is HAM10000's dx code: a lookup-only alias, never matched in a caption.
    assert onto.lookup("bcc") == ["basal cell carcinoma"]
    assert onto.lookup("  Basal Cell Epithelioma ") == ["basal cell carcinoma"]
    assert onto.lookup("naevus") == ["melanocytic nevus"]
    assert onto.lookup("SK") == ["seborrhoeic keratosis"]
    assert onto.lookup("sk") == []
    assert onto.lookup("not a condition") == []


def test_derm1m_json_path_matches_release_label(shared: Path) -> None:
    """Derm1M's ontology.json gives impetigo exactly the path Derm1M's own rows carry."""
    d = Ontology.load(shared / "reference/derm1m/ontology.json")
    # 369 distinct names plus "root", plus a second copy of "melanocytic" and "non-melanocytic",
    # which the file lists under both "benign" and "malignant".
    assert len(d.nodes) == 372
    assert sorted(n.id for n in d.nodes.values() if n.name == "non-melanocytic") == \
        ["malignant > non-melanocytic", "non-melanocytic"]
    expected = _dev_row_paths(shared)["impetigo"]
    assert expected == "inflammatory, infectious, bacterial, pyoderma, impetigo"
    assert ", ".join(d.path("impetigo")) == expected
    assert d.lookup("Impetigo") == ["impetigo"]
    # Comma-joined Derm1M names stay whole; their parts become synonyms.
    assert d.lookup("melanoma") == ["malignant melanoma, melanoma"]


def test_derm1m_json_malignant_paths(shared: Path) -> None:
    """BCC sits under 'malignant', as in Derm1M's hierarchical labels, dermatofibroma under 'benign':
    the file merges both 'non-melanocytic' lists, and our ontology decides each child's side."""
    d = Ontology.load(shared / "reference/derm1m/ontology.json")
    paths = _dev_row_paths(shared)
    for label in ("basal cell carcinoma", "dermatofibroma", "squamous cell carcinoma", "kaposi sarcoma"):
        assert ", ".join(d.path_names(label)) == paths[label], label
    assert paths["basal cell carcinoma"] == "proliferations, malignant, non-melanocytic, basal cell carcinoma"
    assert d.path_names("malignant melanoma, melanoma")[:3] == ["proliferations", "malignant", "melanocytic"]
    assert d.path_names("melanocytic nevus")[:3] == ["proliferations", "benign", "melanocytic"]
    # Without a reference every child of a shared grouping stays with the first parent.
    plain = Ontology.from_derm1m_json(shared / "reference/derm1m/ontology.json")
    assert plain.path_names("basal cell carcinoma")[1] == "benign"


def test_derm1m_json_roundtrip_and_export(shared: Path, tmp_path: Path) -> None:
    """Export gives Derm1M's parent -> children lists back (names lowercased, shared groupings merged)."""
    src = json.loads((shared / "reference/derm1m/ontology.json").read_text(encoding="utf-8"))
    d = Ontology.load(shared / "reference/derm1m/ontology.json")
    out = d.to_derm1m_json()
    lower = {k.strip().lower(): [x.strip().lower() for x in v] for k, v in src.items()}
    assert {k: sorted(v) for k, v in out.items() if v} == {k: sorted(v) for k, v in lower.items() if v}
    d.to_owl(tmp_path / "d.owl")
    back = Ontology.load(tmp_path / "d.owl")
    assert [(n.id, n.parent, n.synonyms) for n in back.walk()] == [(n.id, n.parent, n.synonyms) for n in d.walk()]


def test_every_derm1m_name_resolves_in_our_ontology(onto: Ontology, shared: Path) -> None:
    """Each node name of Derm1M's ontology.json, and each comma-separated synonym in it,
    resolves to a node of ours (an equal or equivalent condition)."""
    src = json.loads((shared / "reference/derm1m/ontology.json").read_text(encoding="utf-8"))
    names = (set(src) | {x for kids in src.values() for x in kids}) - {"root"}
    assert len(names) == 369
    missing = []
    for name in sorted(names):
        parts = [p for p in name.split(",") if p.strip() and p.strip().lower() != "nos"]
        missing += [(name, t) for t in dict.fromkeys([name, *parts]) if not onto.resolve(t)]
    assert missing == []
    assert onto.resolve("Malignant melanoma, melanoma") == ["melanoma"]
    assert onto.resolve("Chronic dermatitis, NOS") == onto.resolve("chronic dermatitis")
    assert onto.resolve("Knuckle pads") == ["knuckle pad"]
    assert sorted(onto.resolve("non-melanocytic")) == ["benign non-melanocytic", "malignant non-melanocytic"]


# -- annotation -------------------------------------------------------------------------------

def test_condition_variants() -> None:
    """Plural, hyphen and possessive variants the matcher relies on."""
    assert "seborrhoeic keratoses" in condition_variants("seborrhoeic keratosis")
    assert "melanocytic naevi" in condition_variants("melanocytic naevus")
    assert {"bullae", "bullas"} <= set(condition_variants("bulla"))
    assert "keloids" in condition_variants("keloid")
    sjs = condition_variants("stevens-johnson syndrome")
    assert {"stevens johnson syndrome", "stevensjohnson syndrome", "stevens-johnson syndromes"} <= set(sjs)
    assert "kaposi's sarcoma" in condition_variants("kaposi sarcoma")
    assert condition_variants("psoriasis") == ["psoriases", "psoriasis", "psoriatic"]   # adjective form too


def test_grouping_adjectives(onto: Ontology) -> None:
    """Bare-adjective grouping nodes are recognised; condition names are not."""
    for name in ("bacterial", "viral", "benign", "malignant", "hereditary"):
        assert is_grouping_adjective(onto, name), name
    for name in ("psoriasis", "impetigo", "eczema"):
        assert not is_grouping_adjective(onto, name), name


@pytest.mark.parametrize(("caption", "labels"), [
    ("A BCC on the nose", ["basal cell carcinoma"]),
    ("Two BCCs on the cheek", ["basal cell carcinoma"]),
    # "nodular bcc" is a synonym of the (sibling) node; the longest match wins over "BCC".
    ("A nodular BCC on the nose", ["nodular basal cell carcinoma"]),
    ("a bcc on the nose", []),
    ("multiple seborrheic keratoses on the back", ["seborrhoeic keratosis"]),
    ("multiple keloids on the chest", ["keloid"]),
    ("a melanocytic naevus on the arm", ["melanocytic nevus"]),
    ("stevens johnson syndrome after a new drug", ["stevens-johnson syndrome"]),
    ("Stevens-Johnson syndrome after a new drug", ["stevens-johnson syndrome"]),
    ("Kaposi's sarcoma on the foot", ["kaposi sarcoma"]),
    ("Eczema, specifically atopic dermatitis, on the arm", ["atopic dermatitis"]),
    ("a viral illness called pityriasis rosea", ["pityriasis rosea"]),
    ("Benign growth of a hereditary kind", []),
])
def test_condition_labels(annotator: Annotator, caption: str, labels: list[str]) -> None:
    """Abbreviations (case-sensitive), plurals, spellings, hyphens, most-specific label, no grouping adjectives."""
    ann = annotator(caption)
    assert ann.disease_labels == labels
    assert ann.label_source == ("caption" if labels else "none")


def test_hierarchy_of_label(annotator: Annotator) -> None:
    """The hierarchical label is the most specific label's path, root excluded."""
    ann = annotator("Eczema, specifically atopic dermatitis, on the arm")
    assert ann.hierarchical == ["inflammatory", "non-infectious", "eczema", "atopic dermatitis"]
    assert ann.release_row()["hierarchical_disease_label"] == "inflammatory, non-infectious, eczema, atopic dermatitis"


def test_negated_condition(annotator: Annotator) -> None:
    """A negated condition is kept apart, never reported as the diagnosis."""
    ann = annotator("No evidence of melanoma. This is a seborrheic keratosis.")
    assert ann.disease_labels == ["seborrhoeic keratosis"]
    assert ann.negated_labels == ["melanoma"]
    ann = annotator("lupus was ruled out")
    assert ann.disease_labels == []
    assert ann.negated_labels == ["lupus erythematosus"]
    assert ann.release_row()["disease_label"] == NO_DIAGNOSIS


def test_differential_conditions(annotator: Annotator) -> None:
    """Differentials go to differential_labels; with nothing affirmed, the first of them is
    also the label (label_source hedged), as Derm1M labels such captions."""
    ann = annotator("differential diagnosis includes psoriasis versus lichen planus")
    assert (ann.disease_labels, ann.label_source) == (["psoriasis"], "hedged")
    assert ann.differential_labels == ["psoriasis", "lichen planus"]
    assert ann.negated_labels == []
    ann = annotator("Suspected melanoma on the back.")
    assert (ann.disease_labels, ann.differential_labels) == (["melanoma"], ["melanoma"])
    ann = annotator("Psoriasis on the elbows; lichen planus is suspected.")
    assert (ann.disease_labels, ann.differential_labels, ann.label_source) == (["psoriasis"], ["lichen planus"], "caption")


def test_differential_after_colon(annotator: Annotator) -> None:
    """'Differential diagnosis: psoriasis.' lists a differential (the colon keeps the cue): it is
    a hedged label, not an affirmed one."""
    ann = annotator("Differential diagnosis: psoriasis.")
    assert (ann.disease_labels, ann.label_source) == (["psoriasis"], "hedged")
    assert ann.differential_labels == ["psoriasis"]


def test_no_definitive_diagnosis_marker(annotator: Annotator) -> None:
    """When nothing maps, the release row says so with Derm1M's marker."""
    row = annotator("A red patch on the arm.").release_row()
    assert row["disease_label"] == NO_DIAGNOSIS == "no definitive diagnosis"
    assert row["hierarchical_disease_label"] == ""


def test_context_only_when_caption_names_nothing(annotator: Annotator) -> None:
    """The video/article title labels a caption only if the caption names no condition at all."""
    ann = annotator("A red patch on the arm.", context="Psoriasis explained")
    assert (ann.disease_labels, ann.label_source) == (["psoriasis"], "context")
    assert ann.hierarchical == ["inflammatory", "non-infectious", "psoriasis"]
    ann = annotator("A thin plaque of eczema.", context="Psoriasis explained")
    assert (ann.disease_labels, ann.label_source) == (["eczema"], "caption")
    ann = annotator("Psoriasis was ruled out.", context="Lichen planus")
    assert (ann.disease_labels, ann.negated_labels, ann.label_source) == ([], ["psoriasis"], "none")
    ann = annotator("Could be melanoma.", context="Lichen planus")   # a hedged condition outranks the title
    assert (ann.disease_labels, ann.differential_labels, ann.label_source) == (["melanoma"], ["melanoma"], "hedged")


def test_negated_concept_not_reported(annotator: Annotator) -> None:
    """'no scale' never yields the concept scale; affirmed concepts remain."""
    ann = annotator("A red plaque with no scale.")
    assert ann.concepts == ["red", "plaque"]
    assert "scale" not in annotator("There is no scale on the plaque.").concepts


def test_negated_symptom_uses_negated_name(annotator: Annotator) -> None:
    """A negated symptom reports its negated_name (tender -> nontender) or is dropped (null)."""
    negated = {e.name: e.negated_name for e in load_symptoms(VOCAB["symptoms"])}
    assert negated["tender"] == "nontender"
    assert negated["itch"] == "nonpruritic"
    assert negated["fever"] is None
    assert annotator("There is no tenderness.").symptoms == ["nontender"]
    assert annotator("Without any soreness.").symptoms == ["nontender"]
    assert annotator("She denies itchiness.").symptoms == ["nonpruritic"]
    assert annotator("There is no fever.").symptoms == []
    assert annotator("A painful nodule.").symptoms == ["tender"]


def test_body_sites(annotator: Annotator) -> None:
    """Sub-regions report Derm1M's site names (cheek -> face, shin -> leg)."""
    assert annotator("Lesions on the cheek and shin.").sites == ["face", "leg"]
    assert annotator("A BCC on the nose").sites == ["nose"]


@pytest.mark.parametrize(("caption", "typed", "released"), [
    # Sub-sites of the hand and foot roll up to them in the release column.
    ("Hyperkeratotic plaques on both palms.", ["palm"], "hand"),
    ("Scaling between the toes and on the soles.", ["toe", "sole"], "foot"),
    ("A wart on the finger.", ["finger"], "finger"),
    # Region and grouping names are never release values.
    ("A rash over the trunk and the upper limbs.", ["trunk", "upper limb"], NO_LOCATION),
    ("Erosions of the mucosa and the genitals.", ["mucosa", "genitals"], NO_LOCATION),
    ("Lesions on acral skin and in the skin folds.", ["acral", "skin folds"], NO_LOCATION),
    # A released site under a grouping keeps its own name; duplicates collapse.
    ("Ulcers of the oral mucosa and the palms, and on the hands.", ["oral", "palm", "hand"], "oral, hand"),
])
def test_release_body_location_uses_derm1m_site_vocabulary(annotator: Annotator, caption: str, typed: list[str],
                                                           released: str) -> None:
    """The typed column keeps every site as matched; the release column follows Derm1M's
    vocabulary (no region or grouping names; palm -> hand, sole/toe -> foot)."""
    ann = annotator(caption)
    assert ann.sites == typed
    assert ann.table_row()["body_locations"] == typed
    assert ann.release_row()["body_location"] == released


def test_full_release_and_table_row(annotator: Annotator) -> None:
    """A caption with everything fills all seven release columns and the typed columns."""
    ann = annotator("A 45-year-old woman with an itchy, painful red plaque of psoriasis on the elbow.")
    assert ann.release_row() == {
        "disease_label": "psoriasis",
        "hierarchical_disease_label": "inflammatory, non-infectious, psoriasis",
        "skin_concept": "red, plaque",
        "body_location": "elbow",
        "symptoms": "tender",      # itch is outside Derm1M's symptom vocabulary: typed column only
        "age": "45",
        "gender": "female",
    }
    row = ann.table_row()
    assert row["disease_labels"] == ["psoriasis"]
    assert row["label_source"] == "caption"
    assert row["skin_concepts"] == ["red", "plaque"]
    assert row["symptom_list"] == ["itch", "tender"]
    assert (row["age_years"], row["sex"], row["skin_type"]) == (45, "female", None)


def test_empty_release_markers(annotator: Annotator) -> None:
    """A caption with nothing to extract gets every 'No ... information' marker."""
    row = annotator("A photo.").release_row()
    assert row == {
        "disease_label": "no definitive diagnosis",
        "hierarchical_disease_label": "",
        "skin_concept": NO_CONCEPTS,
        "body_location": NO_LOCATION,
        "symptoms": NO_SYMPTOMS,
        "age": NO_AGE,
        "gender": NO_GENDER,
    }
    assert (NO_CONCEPTS, NO_LOCATION, NO_SYMPTOMS, NO_AGE, NO_GENDER) == (
        "No visual concepts", "No body location information", "No symptom information",
        "No age information", "No gender information")


# -- demographics -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "age"), [
    ("A 45-year-old man", 45),
    ("a 45 year old woman", 45),
    ("patient aged 45 with a rash", 45),
    ("45 yo male", 45),
    ("45 y/o female", 45),
    ("45 years of age", 45),
    ("a 6-month-old infant", 0),
    ("a 2-week-old baby", 0),
    ("a woman in her forties", 45),
    ("a man in his late fifties", 55),
    ("a 300-year-old tree", None),
    ("an elderly patient", None),
])
def test_extract_age(text: str, age: int | None) -> None:
    """Stated ages in whole years; infants are 0; decades map to their middle; implausible ages dropped."""
    assert extract_age(text) == age


@pytest.mark.parametrize(("text", "sex"), [
    ("a boy with a rash", "male"),
    ("his arm", "male"),
    ("her lesion", "female"),
    ("A woman; he said it itched", "female"),
    ("she says the man has it", "male"),
    ("a man and a woman", None),
    ("he and she", None),
    ("nothing here", None),
])
def test_extract_sex(text: str, sex: str | None) -> None:
    """Person nouns win over pronouns; both sexes stated (or none) gives None."""
    assert extract_sex(text) == sex


@pytest.mark.parametrize(("text", "skin_type"), [
    ("Fitzpatrick skin type IV", 4),
    ("FST 2", 2),
    ("type V skin", 5),
    ("skin type vi", 6),
    ("phototype III", 3),
    ("Fitzpatrick type 3", 3),
    ("type 7 skin", None),
    ("type II diabetes", None),
])
def test_extract_skin_type(text: str, skin_type: int | None) -> None:
    """Fitzpatrick types in Roman or Arabic numerals; out-of-range and unrelated 'type' ignored."""
    assert extract_skin_type(text) == skin_type


# -- truncation -------------------------------------------------------------------------------

SENTENCE = "Sentence number {} describes an erythematous scaly plaque on the extensor surface of the left elbow."


def test_short_caption_unchanged(truncator: CaptionTruncator) -> None:
    """A caption that fits is returned as is."""
    caption = "A red scaly plaque on the elbow."
    t = truncator(caption)
    assert (t.text, t.cut) == (caption, "none")
    assert t.n_tokens == t.n_tokens_kept == truncator.count(caption) == 11


def test_cut_at_sentence(truncator: CaptionTruncator) -> None:
    """A long multi-sentence caption keeps the most whole sentences that fit."""
    sentences = [SENTENCE.format(i) for i in range(8)]
    caption = " ".join(sentences)
    t = truncator(caption)
    assert t.cut == "sentence"
    assert caption.startswith(t.text)
    assert t.text.endswith(".")
    assert t.n_tokens == truncator.count(caption) > 77
    assert t.n_tokens_kept == truncator.count(t.text) <= 77
    k = t.text.count("Sentence number")
    assert t.text == " ".join(sentences[:k])
    assert truncator.count(" ".join(sentences[:k + 1])) > 77


def test_cut_at_clause(truncator: CaptionTruncator) -> None:
    """One very long sentence with commas is cut after a clause, without the trailing comma."""
    caption = "The lesion is " + ", ".join(f"an erythematous plaque with scale number {i}" for i in range(20)) + "."
    t = truncator(caption)
    assert t.cut == "clause"
    assert caption.startswith(t.text)
    assert caption[len(t.text)] == ","
    assert not t.text.endswith(",")
    assert truncator.count(t.text) <= 77


def test_cut_at_word(truncator: CaptionTruncator) -> None:
    """A long comma-free sentence is cut at a word boundary: a prefix ending on a whole word."""
    words = ["The", "lesion", "is"] + [w for i in range(30) for w in ("erythematous", f"plaque{i}", "with", "silvery", "scale")]
    caption = " ".join(words)
    t = truncator(caption)
    assert t.cut == "word"
    assert caption.startswith(t.text)
    assert caption[len(t.text)] == " "
    k = len(t.text.split())
    assert t.text.split() == words[:k]
    assert truncator.count(t.text) <= 77 < truncator.count(" ".join(words[:k + 1]))


def test_artefacts_only_in_dermoscopic_captions(annotator: Annotator) -> None:
    """Hair, nail, ruler are image artefacts in dermoscopy; elsewhere they are anatomy."""
    assert "nail" not in annotator("Severe skin and nail involvement with itching.").concepts
    assert "hair" not in annotator("Red, inflamed hair follicles.").concepts
    derm = annotator("Dermoscopic image of a nevus with hair and a ruler at the edge.").concepts
    assert {"hair", "ruler"} <= set(derm)


def test_concept_conventions_for_blisters_and_extent(annotator: Annotator) -> None:
    """A bare 'blisters' is size-ambiguous (vesicle or bulla) and maps to neither; sized ones map."""
    assert not {"vesicle", "bulla"} & set(annotator("Blisters on the hands.").concepts)
    assert "vesicle" in annotator("Small blisters on the hands.").concepts
    assert "bulla" in annotator("Large tense blisters on the thigh.").concepts
    ann = annotator("Fish-like scales all over the body.")
    assert "generalized" in ann.concepts and ann.sites == []


@pytest.mark.parametrize(("caption", "age", "group"), [
    ("A 6-month-old infant with scaly patches.", 0, "infant"),
    ("An 8 year old boy with warts.", 8, "child"),
    ("A 15-year-old with acne.", 15, "adolescent"),
    ("A 23-year-old girl with hives.", 23, "adult"),          # the stated age wins over "girl"
    ("Purpura in an elderly man.", None, "elderly"),
    ("Blistering in a newborn.", None, "infant"),
    ("Itching since childhood in a man.", None, None),      # onset, not the patient's age
    ("A woman in her forties.", 45, "adult"),
])
def test_age_and_age_group(annotator: Annotator, caption: str, age: int | None, group: str | None) -> None:
    row = annotator(caption).table_row()
    assert (row["age_years"], row["age_group"]) == (age, group)


@pytest.mark.parametrize(("caption", "days"), [
    ("Itchy papules for three weeks.", 21),
    ("A 2-year history of plaques on the elbows.", 730),
    ("Abdominal erythema lasting for more than 10 days.", 10),
    ("A nodule present for about 4 months.", 120),
    ("A 45-year-old man with psoriasis.", None),
    ("Treated twice a day.", None),
])
def test_duration_in_days(annotator: Annotator, caption: str, days: int | None) -> None:
    assert annotator(caption).table_row()["duration_days"] == days


def test_non_prefix_negates_only_its_word(annotator: Annotator) -> None:
    """'non-scaly' negates scale; 'non-healing ulcer' still has an ulcer; 'non-tender' is its own symptom."""
    assert "scaly" not in annotator("Non-scaly lesions with an intense erythema.").concepts
    assert "ulcer" in annotator("A non-healing ulcer on the leg.").concepts
    assert annotator("Non-tender nodules on the arm.").symptoms == ["nontender"]


def test_compound_concept_phrases_carry_each_concept(annotator: Annotator) -> None:
    """'white patches' is a colour and a morphology; the longest match does not swallow 'patch'."""
    assert {"white(hypopigmentation)", "patch"} <= set(annotator("Small white patches on the back.").concepts)


def test_symptom_word_inside_a_concept_phrase_is_morphology(annotator: Annotator) -> None:
    """'pus-filled bumps' are pustules, not an exudate; pus draining from a lesion is one."""
    ann = annotator("Small, red, pus-filled bumps on the chin.")
    assert "pustule" in ann.concepts and "exudate" not in ann.symptoms
    assert "exudate" in annotator("Pus draining from the nodule.").symptoms


@pytest.mark.parametrize(("caption", "labels"), [
    ("Ulcers and patches on the foot, consistent with keloid.", ["keloid"]),   # both are findings/concepts
    ("Plaques and ulcers on the forearm, which is really typical of a keloid.", ["keloid"]),
    ("Hyperpigmentation consistent with actinic keratoses.", ["actinic keratosis"]),
    ("An ulcer on the leg.", ["ulcer"]),                                       # no cue: the finding itself
    ("Psoriasis with ulcers, consistent with keloid.", ["psoriasis"]),         # a named disease still leads
])
def test_a_finding_after_a_diagnosis_cue_is_the_diagnosis(annotator: Annotator, caption: str, labels: list[str]) -> None:
    assert [annotator.ontology.name(x) for x in annotator(caption).disease_labels] == labels


@pytest.mark.parametrize(("caption", "concepts"), [
    ("This is a close up clinical image. The skin texture of this patient is elevated irregular.", ["verrucous", "papule"]),
    ("The skin texture of this patient is desquamative. Red patches.", ["red", "patch", "rough", "desquamation", "scaly"]),
    ("The skin texture of this patient is flat.", []),
])
def test_public_dataset_template_sentence_maps_to_fixed_concepts(annotator: Annotator, caption: str,
                                                                 concepts: list[str]) -> None:
    """A fixed template sentence (SCIN's texture field) stands for a fixed concept set; words
    inside it do not match on their own, words outside it still do."""
    assert annotator(caption).concepts == concepts


def test_concept_template_with_unknown_concept_is_an_error(tmp_path: Path) -> None:
    from pipeline.text.vocab import load_concept_templates

    path = tmp_path / "concepts.yaml"
    path.write_text("concepts: [{name: papule}]\ntemplates: [{phrase: 'x is y', concepts: [papule, nodule]}]\n")
    with pytest.raises(PipelineError, match="unknown concepts"):
        load_concept_templates(path)


@pytest.mark.parametrize(("caption", "absent", "present"), [
    ("Generalized vitiligo on the trunk.", "generalized", None),
    ("Localized scleroderma with a white patch.", "localized", "patch"),
    ("Generalized erythematous plaques.", None, "generalized"),
])
def test_distribution_word_of_a_condition_name_is_not_a_finding(annotator: Annotator, caption: str,
                                                                absent: str | None, present: str | None) -> None:
    concepts = annotator(caption).concepts
    assert absent not in concepts
    assert present is None or present in concepts


def test_negation_scopes_over_a_list_of_concepts(annotator: Annotator) -> None:
    """A cue covers each member of a list it introduces, beyond its 6-token window."""
    ann = annotator("A red plaque without scale, crust, erosion, ulceration, fissures.")
    assert ann.concepts == ["red", "plaque"]
