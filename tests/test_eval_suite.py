"""Derm1M's benchmark suite and side-by-side model comparison, on real tiny models and real files.

Models are ``derm1m-tiny`` built from its config (no downloads): the smoke-trained one and a
seeded random-init checkpoint written by the test. Datasets are generated in each published
layout (PAD-UFES-20, Fitzpatrick17k, DDI, class folders, SkinCon, SkinCAP); the ``shared`` test
runs the suite on the real HAM10000, Derm7pt and DermNet files.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image, ImageDraw

from pipeline.errors import PipelineError
from pipeline.training import benchmark_csv as bc
from pipeline.training.evaluate import evaluate_model, probe_metrics
from pipeline.training.models import load_weights, parse_model_spec, parse_model_specs
from pipeline.training.pretrained import Weights
from pipeline.training.suite import (
    concept_auroc,
    concept_phrases,
    concepts_from_csv,
    retrieval_from_csv,
)

COLOURS = {"red": (200, 40, 40), "green": (40, 190, 40), "blue": (40, 40, 200), "yellow": (210, 200, 40)}


def _image(path: Path, colour: tuple[int, int, int], rng: random.Random, size: int = 64) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (size, size), (225 + rng.randint(-10, 10), 200, 180))
    x, y = rng.randint(2, 16), rng.randint(2, 16)
    ImageDraw.Draw(im).ellipse((x, y, x + 36, y + 36), fill=colour)
    im.save(path, "PNG" if path.suffix == ".png" else "JPEG")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple]:
    """A seeded random-init derm1m-tiny checkpoint (open_clip_train's layout) and the loaded model."""
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(7)
    from pipeline.training.configs import register_model_configs

    register_model_configs()
    ckpt = folder / "tiny-random.pt"
    torch.save({"state_dict": open_clip.create_model("derm1m-tiny").state_dict()}, ckpt)
    return ckpt, load_weights(Weights("derm1m-tiny", str(ckpt), "file"), "cpu")


# --- metric functions with known answers --------------------------------------------------------


def test_concept_auroc_known_answers() -> None:
    sims = torch.tensor([[0.9, 0.1, 0.5], [0.8, 0.2, 0.5], [0.1, 0.9, 0.5], [0.2, 0.7, 0.5]])
    out = concept_auroc(sims, {"perfect": [1, 1, 0, 0], "inverted": [1, 1, 0, 0], "constant": [1, 1, 1, 1]})
    assert out["auroc/perfect"] == 1.0 and out["auroc/inverted"] == 0.0
    assert out["auroc/constant"] is None  # one class only: no AUROC, not in the mean
    assert out["concept_auroc_mean"] == 0.5 and out["concept_n_scored"] == 2 and out["concept_n_concepts"] == 3


def test_concept_prompts_come_from_the_ontology() -> None:
    phrases = concept_phrases(["Brown(Hyperpigmentation)", "Vesicle", "pigment_network", "glitter"])
    assert phrases["Brown(Hyperpigmentation)"][0] == "brown hyperpigmentation"
    assert "vesicles" in phrases["Vesicle"] and phrases["pigment_network"][0] == "pigment network"
    assert phrases["glitter"] == ["glitter"]  # not in concepts.yaml: its own name


def test_probe_label_ratios_are_separate_seeded_fits() -> None:
    rng = np.random.default_rng(0)
    labels = [["a", "b", "c"][i % 3] for i in range(300)]
    x = np.stack([np.eye(3)[i % 3] * 4 + rng.normal(0, 0.5, 3) for i in range(300)])
    probe = {"label_fractions": [0.01, 0.1, 1.0], "C": 1.0, "seed": 0}
    out = probe_metrics(x, labels, x[:30], labels[:30], probe)
    assert out["probe_1pct_n_train"] == 3 and out["probe_10pct_n_train"] == 30 and out["probe_100pct_n_train"] == 300
    assert out["probe_100pct_top1"] == 1.0 and out == probe_metrics(x, labels, x[:30], labels[:30], probe)


def test_derm7pt_criteria_become_concepts() -> None:
    known = {"streaks", "irregular streaks", "regular streaks", "pigment network", "atypical pigment network"}
    row = {"pigment_network": "atypical", "streaks": "absent", "pigmentation": "diffuse irregular",
           "regression_structures": "absent", "dots_and_globules": "regular", "blue_whitish_veil": "present",
           "vascular_structures": "absent"}
    c = bc.derm7pt_concepts(row, known)
    assert c["pigment network"] == 1 and c["atypical pigment network"] == 1
    assert c["streaks"] == 0 and c["irregular streaks"] == 0 and c["regular streaks"] == 0
    assert c["pigmentation"] == 1 and c["blue whitish veil"] == 1 and c["vascular structures"] == 0


# --- benchmark CSV builders on generated published layouts ---------------------------------------


def test_zeroshot_builders_read_each_published_layout(tmp_path: Path) -> None:
    rng = random.Random(0)
    pad = tmp_path / "pad"
    rows = [["patient_id", "lesion_id", "img_id", "diagnostic"]]
    for i, code in enumerate(["ACK", "BCC", "MEL", "NEV", "SCC", "SEK"] * 2):
        rows.append([f"PAT_{i % 4}", str(i), f"PAT_{i % 4}_{i}.png", code])
        _image(pad / "images" / f"PAT_{i % 4}_{i}.png", COLOURS["red"], rng)
    rows.append(["PAT_9", "99", "PAT_9_99.png", "MEL"])  # no image file
    _write(pad / "metadata.csv", rows)
    n, names = bc.build_zeroshot_csv(pad, tmp_path / "pad.csv", "pad_ufes_20")
    frame = pd.read_csv(tmp_path / "pad.csv")
    assert n == 12 and names == sorted(["actinic keratosis", "basal cell carcinoma", "melanoma",
                                        "melanocytic nevus", "squamous cell carcinoma", "seborrheic keratosis"])
    patients = frame["image_path"].str.extract(r"(PAT_\d+)_")[0]
    assert (frame.groupby(patients)["split"].nunique() == 1).all()  # a patient never spans train/test

    fitz = tmp_path / "fitz"
    _write(fitz / "fitzpatrick17k.csv", [["md5hash", "fitzpatrick_scale", "label"],
                                         ["aa", "2", "Psoriasis"], ["bb", "5", "lichen planus"]])
    for h in ("aa", "bb"):
        _image(fitz / "images" / f"{h}.jpg", COLOURS["blue"], rng)
    assert bc.build_zeroshot_csv(fitz, tmp_path / "fitz.csv", "fitzpatrick17k") == (2, ["lichen planus", "psoriasis"])

    ddi = tmp_path / "ddi"
    _write(ddi / "ddi_metadata.csv", [["DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"],
                                      ["1", "000001.png", "12", "True", "melanoma-in-situ"]])
    _image(ddi / "images" / "000001.png", COLOURS["green"], rng)
    assert bc.build_zeroshot_csv(ddi, tmp_path / "ddi.csv", "ddi")[1] == ["melanoma in situ"]
    assert (tmp_path / "ddi_classnames.txt").read_text() == "melanoma in situ\n"
    (ddi / "ddi_metadata.csv").write_text("DDI_file,skin_tone\n000001.png,12\n")
    with pytest.raises(PipelineError, match=r"needs column\(s\) \['disease'\]"):
        bc.build_zeroshot_csv(ddi, tmp_path / "x.csv", "ddi")


def test_class_folder_layout_drops_images_filed_under_two_classes(tmp_path: Path) -> None:
    """DermNet/Daffodil folders: the same bytes under a condition and its synonym have no single label."""
    rng = random.Random(1)
    root = tmp_path / "daffodil"
    for cls, colour in (("Acne_vulgaris", "red"), ("Vitiligo", "yellow")):
        for i in range(3):
            _image(root / cls / f"{i}.jpg", COLOURS[colour], rng)
    (root / "Acne").mkdir()
    (root / "Acne" / "dup.jpg").write_bytes((root / "Acne_vulgaris" / "0.jpg").read_bytes())
    n, names = bc.build_zeroshot_csv(root, tmp_path / "d.csv", "folder")
    assert names == ["acne vulgaris", "vitiligo"] and n == 5  # 0.jpg and its copy both left out
    assert not pd.read_csv(tmp_path / "d.csv")["image_path"].str.endswith("Acne_vulgaris/0.jpg").any()


def _write(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)


def _skincon(tmp_path: Path, labels: list[dict[str, int]] | None = None) -> Path:
    """SkinCon's layout with generated images: red lesions are Erythema, yellow ones Crust."""
    rng = random.Random(3)
    concepts = ["Erythema", "Crust", "Vesicle", "Brown(Hyperpigmentation)"]
    rows = [["ImageID", *concepts]]
    for i in range(24):
        colour = ["red", "yellow", "blue", "green"][i % 4]
        _image(tmp_path / "skincon" / "images" / f"{i:06d}.png", COLOURS[colour], rng)
        rows.append([f"{i:06d}.png", str(int(colour == "red")), str(int(colour == "yellow")), "0",
                     str(int(i % 3 == 0))])
    rows.append(["999999.png", "1", "0", "0", "0"])  # labelled, image absent
    _write(tmp_path / "skincon" / "annotations.csv", rows)
    return tmp_path / "skincon"


def test_skincon_layout_concept_auroc(tiny: tuple, tmp_path: Path) -> None:
    root = _skincon(tmp_path)
    n, concepts = bc.build_skincon_csv(root / "annotations.csv", root / "images", tmp_path / "sc.csv")
    assert n == 24 and concepts == ["Erythema", "Crust", "Vesicle", "Brown(Hyperpigmentation)"]
    _, (model, preprocess, tokenizer) = tiny
    out = concepts_from_csv(tmp_path / "sc.csv", model, preprocess, tokenizer)
    assert out["n_images"] == 24 and out["concept_n_concepts"] == 4 and out["concept_n_scored"] == 3
    assert out["auroc/Vesicle"] is None  # no positive image
    assert 0.0 <= out["concept_auroc_mean"] <= 1.0
    assert out["concept_auroc_mean"] == pytest.approx(np.mean([out[f"auroc/{c}"] for c in
                                                               ("Erythema", "Crust", "Brown(Hyperpigmentation)")]))
    (tmp_path / "bad.csv").write_text("image_path,Erythema\nx.png,maybe\n")
    with pytest.raises(PipelineError, match="0 or 1"):
        concepts_from_csv(tmp_path / "bad.csv", model, preprocess, tokenizer)


def test_skincap_layout_retrieval(tiny: tuple, tmp_path: Path) -> None:
    rng = random.Random(4)
    rows = [["filename", "caption_zh_polish_en"]]
    for i in range(12):
        colour = list(COLOURS)[i % 4]
        _image(tmp_path / "skincap" / "data/skin_cap/images" / f"{i}.png", COLOURS[colour], rng)
        rows.append([f"data/skin_cap/images/{i}.png", f"A {colour} papule on the arm, case {i}."])
    rows.append(["data/skin_cap/images/404.png", "an image that is not there"])
    _write(tmp_path / "skincap" / "skin_cap_meta.csv", rows)
    n, _ = bc.build_skincap_csv(tmp_path / "skincap" / "skin_cap_meta.csv", tmp_path / "skincap", tmp_path / "cap.csv")
    assert n == 12
    _, (model, preprocess, tokenizer) = tiny
    out = retrieval_from_csv(tmp_path / "cap.csv", model, preprocess, tokenizer)
    assert out["n_samples"] == 12 and out["n_images"] == 12
    for d in ("i2t", "t2i"):
        assert 0.0 <= out[f"{d}_R@1"] <= out[f"{d}_R@5"] <= out[f"{d}_R@10"] <= 1.0


# --- model specs ---------------------------------------------------------------------------------


def test_model_specs(tiny: tuple, tmp_path: Path) -> None:
    ckpt, _ = tiny
    profiles = {"smoke": {"model": "derm1m-tiny", "epochs": 1}}
    with pytest.raises(PipelineError, match="run `derm1m train --profile smoke` first"):
        parse_model_spec("smoke", profiles, tmp_path / "models")
    run = tmp_path / "models" / "smoke" / "checkpoints"
    run.mkdir(parents=True)
    (run / "epoch_1.pt").write_bytes(ckpt.read_bytes())
    ours = parse_model_spec("smoke", profiles, tmp_path / "models")
    assert ours.label == "smoke" and ours.profile == "smoke" and ours.weights.pretrained == str(run / "epoch_1.pt")
    other = parse_model_spec(f"random=derm1m-tiny/{ckpt}", profiles, tmp_path / "models")
    assert other.label == "random" and other.weights == Weights("derm1m-tiny", str(ckpt), "file")
    assert parse_model_spec("derm1m-tiny/", profiles, tmp_path).weights.kind == "none"
    with pytest.raises(PipelineError, match="not a training profile"):
        parse_model_spec("smoek", profiles, tmp_path / "models")
    with pytest.raises(PipelineError, match="not in the local Hugging Face cache"):
        parse_model_spec("hf-hub:redlessone/DermLIP_ViT-B-16", profiles, tmp_path)
    with pytest.raises(PipelineError, match="unknown model"):
        parse_model_spec("ViT-Q-99/openai", profiles, tmp_path)
    with pytest.raises(PipelineError, match="repeat"):
        parse_model_specs(["smoke", "smoke"], profiles, tmp_path / "models")


# --- the stage: two models, both rows, on the demo ------------------------------------------------


@pytest.mark.slow
def test_evaluate_two_models_side_by_side_on_the_demo(corpus: dict, tiny: tuple, tmp_path: Path) -> None:
    """``derm1m evaluate --model smoke --model random=derm1m-tiny/CKPT`` on the demo: both rows,
    per-model metrics with the probe's label ratios, a SkinCon-layout concept benchmark and a
    SkinCAP-layout retrieval benchmark; then the report's Model section shows them."""
    from pipeline.cli import main
    from pipeline.stages import train

    ckpt, _ = tiny
    params = json.loads(json.dumps(corpus["params"]))
    params["train"]["out"] = str(tmp_path / "models")
    params["evaluate"]["out"] = str(tmp_path / "metrics")
    root = _skincon(tmp_path)
    bc.build_skincon_csv(root / "annotations.csv", root / "images", tmp_path / "sc.csv")
    params["evaluate"]["benchmarks"] = [{"name": "skincon", "csv": str(tmp_path / "sc.csv"), "kind": "concepts"}]
    train.run(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["evaluate", "--params", str(tmp_path / "params.yaml"),
                 "--model", "smoke", "--model", f"random=derm1m-tiny/{ckpt}"]) == 0
    results = json.loads((tmp_path / "metrics" / "eval.json").read_text())
    assert sorted(results) == ["random", "smoke"]  # eval.json keys are sorted; the table keeps --model order
    for metrics in results.values():
        assert 0 <= metrics["holdout/i2t_R@1"] <= metrics["holdout/i2t_R@10"] <= 1
        assert {"holdout/probe_1pct_top1", "holdout/probe_10pct_top1", "holdout/probe_100pct_top1"} <= set(metrics)
        assert 0 <= metrics["skincon/concept_auroc_mean"] <= 1
    assert results["smoke"]["pretrained"] == "profile smoke" and results["random"]["pretrained"] == str(ckpt)
    table = (tmp_path / "metrics" / "eval_comparison.md").read_text().splitlines()
    assert table[0].startswith("| model | holdout i2t R@10") and "skincon concept AUROC" in table[0]
    assert "| holdout probe 1% bal. acc | holdout probe 10% bal. acc | holdout probe 100% bal. acc |" in table[0]
    assert [line.split("|")[1].strip() for line in table[2:]] == ["smoke", "random"]
    assert main(["evaluate", "--params", str(tmp_path / "params.yaml"), "--model", "nope"]) == 2

    from pipeline.stages import report

    params["report"]["out"] = str(tmp_path / "report")
    params["evaluate"]["models"] = ["smoke", f"random=derm1m-tiny/{ckpt}"]
    report.run(params)
    page = (tmp_path / "report" / "index.html").read_text()
    section = page[page.index('<section id="model">'):]
    section = section[: section.index("</section>")]
    assert "<td>smoke</td>" in section and "<td>random</td>" in section and "skincon concept AUROC" in section
    assert section.index("<td>smoke</td>") < section.index("<td>random</td>")  # the models' order
    assert page.count("data:image/png;base64,") == len(report.FIGURES) + 1  # the comparison plot


@pytest.mark.shared
def test_full_suite_on_shared_datasets(shared: Path, tiny: tuple, tmp_path: Path) -> None:
    """HAM10000 (zero-shot + probe), Derm7pt (zero-shot + concepts) and DermNet (zero-shot) from
    their real files, through the builders and evaluate_model, with the zero-shot mean."""
    _, (model, preprocess, tokenizer) = tiny
    bc.build_zeroshot_csv(shared / "corpus/ham10000", tmp_path / "ham.csv", "ham10000", per_class=12)
    bc.build_zeroshot_csv(shared / "corpus/derm7pt", tmp_path / "d7.csv", "derm7pt", per_class=6)
    bc.build_zeroshot_csv(shared / "corpus/dermnet", tmp_path / "dn.csv", "folder", per_class=2)
    n, concepts = bc.build_derm7pt_concepts_csv(shared / "corpus/derm7pt", tmp_path / "d7c.csv")
    assert n == 1011 and "irregular streaks" in concepts  # FCl/Fcl068.jpg found despite its case
    frame = pd.read_csv(tmp_path / "d7c.csv")
    frame.iloc[::8].to_csv(tmp_path / "d7c_small.csv", index=False)
    benches = [
        {"name": "ham10000", "csv": str(tmp_path / "ham.csv"), "classnames": str(tmp_path / "ham_classnames.txt"),
         "linear_probe": True},
        {"name": "derm7pt", "csv": str(tmp_path / "d7.csv"), "classnames": str(tmp_path / "d7_classnames.txt")},
        {"name": "dermnet", "csv": str(tmp_path / "dn.csv")},
        {"name": "derm7pt_concepts", "csv": str(tmp_path / "d7c_small.csv"), "kind": "concepts"},
    ]
    m = evaluate_model(model, preprocess, tokenizer, None, benchmarks=benches, batch_size=32,
                       probe={"label_fractions": [0.1, 1.0]})
    json.dumps(m, allow_nan=False)
    assert m["ham10000/zeroshot_n_samples"] == 84 and m["ham10000/probe_100pct_n_train"] > 0
    assert m["dermnet/n_classes"] == 123 and m["derm7pt/n_classes"] == 20
    assert m["zeroshot_mean/n_benchmarks"] == 3
    assert m["zeroshot_mean/top1"] == pytest.approx(np.mean([m[f"{b}/zeroshot_top1"]
                                                             for b in ("ham10000", "derm7pt", "dermnet")]))
    assert 0 <= m["derm7pt_concepts/concept_auroc_mean"] <= 1 and m["derm7pt_concepts/concept_n_scored"] >= 7


@pytest.mark.shared
def test_real_skincon_labels_with_generated_images(shared: Path, tiny: tuple, tmp_path: Path) -> None:
    """The shared SkinCon sample (real labels for 100 DDI images, no images): every one of its 32
    concepts is prompted from its ontology/concepts.yaml entry, and the AUROCs are computed for the
    concepts that have positives among the 100."""
    from pipeline.text.vocab import load_concepts
    from pipeline.training.suite import CONCEPTS_YAML

    labels = shared / "reference/skincon/skincon_ddi_sample_100.csv"
    frame = pd.read_csv(labels, dtype=str)
    rng = random.Random(5)
    for image_id in frame["ImageID"]:
        _image(tmp_path / "ddi" / image_id, list(COLOURS.values())[rng.randrange(4)], rng)
    n, concepts = bc.build_skincon_csv(labels, tmp_path / "ddi", tmp_path / "sc.csv")
    assert n == 100 and len(concepts) == 32
    vocab = {e.name.lower() for e in load_concepts(CONCEPTS_YAML)}
    assert {c.lower() for c in concepts} <= vocab  # prompts come from the ontology, not bare column names
    _, (model, preprocess, tokenizer) = tiny
    out = concepts_from_csv(tmp_path / "sc.csv", model, preprocess, tokenizer)
    with_both = sum(0 < int(frame[c].astype(int).sum()) < 100 for c in concepts)
    assert out["concept_n_scored"] == with_both and out["concept_n_concepts"] == 32
    assert 0.0 <= out["concept_auroc_mean"] <= 1.0
