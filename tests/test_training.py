"""Training and evaluation on real tiny shards: open_clip_train runs for real, on CPU.

The module-scoped fixtures write ~44 JPEG/caption samples as WebDataset shards, train the
``derm1m-tiny`` CLIP for 3 steps and share the checkpoint, so the whole file stays well under a
minute on two cores. Pure metric functions are checked against hand-made features whose answer
is known.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from pipeline.errors import PipelineError
from pipeline.tables import OUTPUT_MARKER
from pipeline.training.evaluate import (
    encode_shards,
    evaluate,
    load_model,
    retrieval_metrics,
    zeroshot_from_csv,
    zeroshot_metrics,
)
from pipeline.training.shardset import brace_pattern, list_shards
from pipeline.training.train import (
    build_train_args,
    check_profile_inputs,
    run_training,
    shard_pattern,
)
from pipeline.training.zeroshot import DEFAULT_TEMPLATES, accuracy_metrics, holdout_classes

COLOURS = {
    "psoriasis": (200, 40, 40),
    "eczema": (40, 190, 40),
    "melanoma": (40, 40, 200),
    "acne": (210, 200, 40),
}
CLASSES = list(COLOURS)
SMOKE_PROFILE = {
    "model": "derm1m-tiny",
    "epochs": 1,
    "batch_size": 8,
    "lr": 1e-3,
    "wd": 0.1,
    "warmup": 1,
    "workers": 0,
    "precision": "fp32",
    "local_loss": False,
    "gather_with_grad": False,
    "grad_checkpointing": False,
    "seed": 0,
    "max_train_samples": 24,
    "device": "cpu",
}


def _jpeg(label: str, rng: random.Random) -> bytes:
    """A 64x64 JPEG: a jittered ellipse or square in the class colour on skin-ish background."""
    image = Image.new("RGB", (64, 64), (225 + rng.randint(-10, 10), 200, 180))
    draw = ImageDraw.Draw(image)
    x, y, size = rng.randint(4, 20), rng.randint(4, 20), rng.randint(24, 40)
    shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
    shape((x, y, x + size, y + size), fill=COLOURS.get(label, (120, 120, 120)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _write_shard(path: Path, samples: list[dict]) -> None:
    with tarfile.open(path, "w") as tar:
        for s in samples:
            meta = {k: s[k] for k in ("pair_id", "image_id", "cluster_id", "disease_label")}
            meta |= {"hierarchical_disease_label": s["disease_label"], "split": s["split"]}
            members = {
                "jpg": s["jpg"],
                "txt": s["caption"].encode(),
                "json": json.dumps(meta).encode(),
            }
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{s['pair_id']}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _write_split(root: Path, split: str, samples: list[dict], per_shard: int) -> Path:
    folder = root / split
    folder.mkdir(parents=True)
    sizes = {}
    for n, start in enumerate(range(0, len(samples), per_shard)):
        name = f"{split}-{n:06d}.tar"
        chunk = samples[start : start + per_shard]
        _write_shard(folder / name, chunk)
        sizes[name] = len(chunk)
    (folder / "sizes.json").write_text(json.dumps(sizes))
    return folder


def _sample(split: str, i: int, label: str, rng: random.Random, image_id: str | None = None,
            jpg: bytes | None = None) -> dict:  # fmt: skip
    pair_id = f"{split[0]}{i:07x}"
    return {
        "pair_id": pair_id,
        "image_id": image_id or f"img{pair_id}",
        "cluster_id": i,
        "disease_label": label,
        "split": split,
        "caption": f"clinical photo showing {label} on the forearm",
        "jpg": jpg or _jpeg(label, rng),
    }


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train: 32 samples in 4 shards; holdout: 12 pairs over 10 images, 2 without one class."""
    root = tmp_path_factory.mktemp("shards")
    rng = random.Random(0)
    train = [_sample("train", i, CLASSES[i % 4], rng) for i in range(32)]
    _write_split(root, "train", train, per_shard=8)
    holdout = [_sample("holdout", i, CLASSES[i % 4], rng) for i in range(8)]
    holdout.append(_sample("holdout", 8, "no definitive diagnosis", rng))
    holdout.append(_sample("holdout", 9, "eczema, psoriasis", rng))
    for i, same in enumerate(holdout[:2], start=10):  # second captions of two images
        extra = _sample("holdout", i, same["disease_label"], rng, same["image_id"], same["jpg"])
        extra["caption"] = f"close-up of {same['disease_label']} lesion"
        holdout.append(extra)
    _write_split(root, "holdout", holdout, per_shard=6)
    return root


@pytest.fixture(scope="module")
def trained(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Smoke-train once for the module; a stale run folder of the same name must not block it."""
    logs = tmp_path_factory.mktemp("logs")
    stale = logs / "smoke"
    stale.mkdir()
    (stale / "out.log").write_text("previous run\n")
    (stale / "leftover.txt").write_text("x")
    (stale / OUTPUT_MARKER).write_text("a previous run")   # derm1m wrote it (foreign folders are refused)
    return run_training(shards / "train", SMOKE_PROFILE, logs, "smoke", val_dir=shards / "holdout")


# --- training -------------------------------------------------------------------------------


def test_smoke_training_writes_final_checkpoint(trained: Path) -> None:
    assert trained.name == "epoch_1.pt" and trained.is_file()
    run_dir = trained.parent.parent
    assert not (run_dir / "leftover.txt").exists()  # the stale run was removed, not reused
    params = (run_dir / "params.txt").read_text()
    assert "train_num_samples: 24" in params and "device: cpu" in params
    state = torch.load(trained, map_location="cpu", weights_only=True)
    assert state["epoch"] == 1 and "visual.conv1.weight" in state["state_dict"]


def test_build_train_args_smoke_argv(shards: Path, tmp_path: Path) -> None:
    pattern, n = shard_pattern(shards / "train")
    argv = build_train_args(pattern, n, SMOKE_PROFILE, tmp_path, "smoke")
    assert argv == [
        "--dataset-type", "webdataset",
        "--train-data", f"{shards}/train/train-{{000000..000003}}.tar",
        "--train-num-samples", "24",
        "--model", "derm1m-tiny",
        "--epochs", "1",
        "--batch-size", "8",
        "--lr", "0.001",
        "--wd", "0.1",
        "--warmup", "1",
        "--workers", "0",
        "--precision", "fp32",
        "--seed", "0",
        "--device", "cpu",
        "--save-frequency", "1",
        "--zeroshot-frequency", "0",
        "--report-to", "",
        "--log-every-n-steps", "100",
        "--logs", str(tmp_path),
        "--name", "smoke",
    ]  # fmt: skip
    from open_clip_train.params import parse_args

    big = SMOKE_PROFILE | {"workers": 8, "local_loss": True, "gather_with_grad": True,
                           "grad_checkpointing": True, "precision": "amp_bf16"}  # fmt: skip
    args = parse_args(build_train_args(pattern, n, big, tmp_path, "x", pattern, 32))
    assert args.workers == 4  # capped: open_clip asserts shards >= workers
    assert args.local_loss and args.gather_with_grad and args.grad_checkpointing
    assert args.precision == "amp_bf16" and args.val_num_samples == 32
    assert args.pretrained == "" and args.imagenet_val is None and args.report_to == ""


def test_profile_checks(shards: Path, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="precision"):
        check_profile_inputs(SMOKE_PROFILE | {"precision": "fp64"})
    with pytest.raises(PipelineError, match="missing key 'lr'"):
        check_profile_inputs({k: v for k, v in SMOKE_PROFILE.items() if k != "lr"})
    with pytest.raises(PipelineError, match="epochs must be int"):
        check_profile_inputs(SMOKE_PROFILE | {"epochs": True})
    panderm = SMOKE_PROFILE | {"vision_checkpoint": str(tmp_path / "panderm.pth"),
                               "text_encoder": str(tmp_path / "pubmedbert")}  # fmt: skip
    with pytest.raises(PipelineError, match="vision_checkpoint .* does not exist locally"):
        check_profile_inputs(panderm)
    (tmp_path / "panderm.pth").write_bytes(b"weights")
    with pytest.raises(PipelineError, match="text_encoder .* does not exist locally"):
        check_profile_inputs(panderm)
    (tmp_path / "pubmedbert").mkdir()
    check_profile_inputs(panderm)
    with pytest.raises(PipelineError, match="cannot build the text encoder"):  # tests/test_panderm.py trains one
        run_training(shards / "train", panderm | {"model": "dermlip-panderm"}, tmp_path / "logs", "panderm")


def test_multi_process_on_cpu_is_refused(shards: Path, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="needs GPUs"):
        run_training(shards / "train", SMOKE_PROFILE, tmp_path, "ddp", nproc_per_node=2)


@pytest.mark.slow
def test_torchrun_launcher_trains(shards: Path, tmp_path: Path) -> None:
    """The torchrun path (fresh interpreter, configs registered by ``launch``) on 1 CPU process."""
    profile = SMOKE_PROFILE | {"max_train_samples": 8}
    ckpt = run_training(shards / "train", profile, tmp_path, "tr", use_torchrun=True)
    assert ckpt == tmp_path / "tr" / "checkpoints" / "epoch_1.pt" and ckpt.is_file()


# --- shard discovery ------------------------------------------------------------------------


def test_shard_pattern_and_counts(shards: Path, tmp_path: Path) -> None:
    assert shard_pattern(shards / "holdout") == (f"{shards}/holdout/holdout-{{000000..000001}}.tar", 12)
    folder = tmp_path / "gappy"
    folder.mkdir()
    for n in (0, 1, 3):
        (folder / f"train-{n:06d}.tar").write_bytes(b"")
    with pytest.raises(PipelineError, match="sizes.json: missing"):
        shard_pattern(folder)
    (folder / "sizes.json").write_text(json.dumps({"train-000000.tar": 5, "train-000001.tar": 2}))
    with pytest.raises(PipelineError, match="stale"):
        shard_pattern(folder)
    sizes = {"train-000000.tar": 5, "train-000001.tar": 2, "train-000003.tar": 1}
    (folder / "sizes.json").write_text(json.dumps(sizes))
    assert shard_pattern(folder) == (f"{folder}/train-{{000000,000001,000003}}.tar", 8)
    tars, counts = list_shards(folder)
    assert brace_pattern(tars[:1]) == f"{folder}/train-000000.tar" and counts == sizes
    (folder / "sizes.json").write_text(json.dumps(dict.fromkeys(sizes, 0)))
    with pytest.raises(PipelineError, match="no samples"):
        shard_pattern(folder)
    with pytest.raises(PipelineError, match="no .tar shards"):
        shard_pattern(tmp_path)
    with pytest.raises(PipelineError, match="no such shard folder"):
        shard_pattern(tmp_path / "absent")


# --- metrics with known answers -------------------------------------------------------------


def test_retrieval_metrics_known_answers() -> None:
    eye = np.eye(4)
    perfect = retrieval_metrics(eye, eye)
    assert perfect == {f"{d}_R@{k}": 1.0 for d in ("i2t", "t2i") for k in (1, 5, 10)}
    # caption i is closest to image (i-1) % 4 and second-closest to its own image
    texts = np.roll(eye, 1, axis=0) * 1.0 + eye * 0.5
    shifted = retrieval_metrics(eye, texts, ks=(1, 2))
    assert shifted == {"i2t_R@1": 0.0, "i2t_R@2": 1.0, "t2i_R@1": 0.0, "t2i_R@2": 1.0}
    # a collapsed model (all features equal) gets no credit from ties
    flat = retrieval_metrics(np.ones((3, 2)), np.ones((3, 2)), ks=(1, 3))
    assert flat == {"i2t_R@1": 0.0, "i2t_R@3": 1.0, "t2i_R@1": 0.0, "t2i_R@3": 1.0}


def test_retrieval_metrics_counts_each_image_once() -> None:
    # rows 0 and 1 are two captions of image "a"; caption 1 matches "b" better than "a"
    images = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [0.4, 1.0], [0.1, 1.0]])
    m = retrieval_metrics(images, texts, image_ids=["a", "a", "b"], ks=(1, 2))
    # image a: caption 0 is its top hit; image b: captions 2 (0.995) beats caption 1 (0.93)
    assert m["i2t_R@1"] == 1.0
    # caption 0 -> a (hit), caption 1 -> b first (miss), caption 2 -> b (hit)
    assert m["t2i_R@1"] == pytest.approx(2 / 3) and m["t2i_R@2"] == 1.0
    without_ids = retrieval_metrics(images, texts, ks=(1,))
    assert without_ids["i2t_R@1"] < 1.0  # row 1's image is a duplicate scored as "wrong"


def test_accuracy_metrics_and_holdout_classes() -> None:
    logits = torch.tensor([[3.0, 2, 1, 0], [0, 3, 2, 1], [3, 2, 1, 0], [0, 1, 2, 3]])
    targets = torch.tensor([0, 0, 1, 3])
    m = accuracy_metrics(logits, targets)
    assert m["top1"] == 0.5 and m["top3"] == 0.75
    assert m["balanced_acc"] == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    meta = [{"disease_label": x} for x in
            ["acne", "no definitive diagnosis", "acne, eczema", "eczema", None, " acne "]]  # fmt: skip
    classes, labels = holdout_classes(meta)
    assert classes == ["acne", "eczema"]
    assert labels == ["acne", None, None, "eczema", None, "acne"]


# --- evaluation on the trained checkpoint ---------------------------------------------------


def _benchmark_csv(folder: Path, shards: Path) -> Path:
    """CSV rows: 4 good images, one missing file, one unreadable file, one unknown label."""
    folder.mkdir()
    (folder / "imgs").mkdir()
    rng = random.Random(1)
    rows = ["image_path,label"]
    for i, label in enumerate(CLASSES):
        (folder / "imgs" / f"{i}.jpg").write_bytes(_jpeg(label, rng))
        rows.append(f"imgs/{i}.jpg,{label}")
    (folder / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    rows += ["imgs/absent.jpg,acne", "imgs/broken.jpg,eczema", "imgs/0.jpg,rosacea"]
    csv = folder / "bench.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def test_evaluate_metrics(trained: Path, shards: Path, tmp_path: Path) -> None:
    csv = _benchmark_csv(tmp_path / "bench", shards)
    bench = [{"name": "toy", "csv": str(csv), "classnames": CLASSES}]
    metrics = evaluate(trained, "derm1m-tiny", shards / "holdout", DEFAULT_TEMPLATES, "cpu", 8, bench)
    json.dumps(metrics, allow_nan=False)  # flat and JSON-serialisable
    for direction in ("i2t", "t2i"):
        r1, r5, r10 = (metrics[f"holdout/{direction}_R@{k}"] for k in (1, 5, 10))
        assert 0.0 <= r1 <= r5 <= r10 <= 1.0
    assert metrics["holdout/n_samples"] == 12 and metrics["holdout/n_images"] == 10
    assert metrics["holdout/n_classes"] == 4
    assert metrics["holdout/zeroshot_n_samples"] == 10
    assert metrics["holdout/zeroshot_n_excluded"] == 2
    for key in ("zeroshot_top1", "zeroshot_top3", "zeroshot_balanced_acc"):
        assert 0.0 <= metrics[f"holdout/{key}"] <= 1.0
    assert metrics["holdout/zeroshot_top3"] >= metrics["holdout/zeroshot_top1"]
    assert metrics["toy/n_rows"] == 7 and metrics["toy/n_missing"] == 1
    assert metrics["toy/n_unreadable"] == 1 and metrics["toy/zeroshot_n_excluded"] == 1
    assert metrics["toy/zeroshot_n_samples"] == 4 and metrics["toy/n_classes"] == 4
    again = evaluate(trained, "derm1m-tiny", shards / "holdout", DEFAULT_TEMPLATES, "cpu", 8)
    assert {k: v for k, v in metrics.items() if k.startswith("holdout/")} == again


def test_encode_shards_order_and_module_prefix(trained: Path, shards: Path, tmp_path: Path) -> None:
    """Shards are read in file order; a DDP (``module.``-prefixed) checkpoint loads the same."""
    model, preprocess, tokenizer = load_model(trained, "derm1m-tiny", "cpu")
    tars, _ = list_shards(shards / "holdout")
    images, texts, meta = encode_shards(model, preprocess, tokenizer, tars, "cpu", 5)
    assert [m["__key__"] for m in meta] == [f"h{i:07x}" for i in range(12)]
    assert images.shape == texts.shape == (12, 64)
    assert torch.allclose(images.norm(dim=1), torch.ones(12), atol=1e-5)

    state = torch.load(trained, map_location="cpu", weights_only=True)
    state["state_dict"] = {f"module.{k}": v for k, v in state["state_dict"].items()}
    ddp_ckpt = tmp_path / "ddp.pt"
    torch.save(state, ddp_ckpt)
    model2, _, _ = load_model(ddp_ckpt, "derm1m-tiny", "cpu")
    images2, _, _ = encode_shards(model2, preprocess, tokenizer, tars[:1], "cpu", 5)
    assert torch.allclose(images2, images[:6], atol=1e-6)
    with pytest.raises(PipelineError, match="no such checkpoint"):
        load_model(tmp_path / "absent.pt", "derm1m-tiny", "cpu")


def test_zeroshot_helpers_skip_missing_and_unscorable(trained: Path, shards: Path,
                                                      tmp_path: Path) -> None:  # fmt: skip
    model, preprocess, tokenizer = load_model(trained, "derm1m-tiny", "cpu")
    feats = torch.nn.functional.normalize(torch.randn(3, 64), dim=1)
    none = zeroshot_metrics(model, tokenizer, feats, [None, "x", None], CLASSES, ["{}"], "cpu")
    assert none == {"n_samples": 0, "n_excluded": 3, "n_classes": 4,
                    "top1": None, "top3": None, "balanced_acc": None}  # fmt: skip
    csv = _benchmark_csv(tmp_path / "bench", shards)
    # integer labels index the given class names; classnames=None uses the CSV's own labels
    (tmp_path / "bench" / "idx.csv").write_text("image_path,label\nimgs/0.jpg,0\nimgs/9.jpg,1\n")
    by_index = zeroshot_from_csv(tmp_path / "bench" / "idx.csv", CLASSES, model, preprocess,
                                 tokenizer, DEFAULT_TEMPLATES, "cpu")  # fmt: skip
    assert by_index["n_samples"] == 1 and by_index["n_missing"] == 1
    own = zeroshot_from_csv(csv, None, model, preprocess, tokenizer, DEFAULT_TEMPLATES, "cpu")
    assert own["n_classes"] == 5 and own["n_excluded"] == 0 and own["n_samples"] == 5
    (tmp_path / "bad.csv").write_text("path,diagnosis\n")
    with pytest.raises(PipelineError, match="image_path"):
        zeroshot_from_csv(tmp_path / "bad.csv", None, model, preprocess, tokenizer, ["{}"], "cpu")


# --- linear probe, benchmark CSVs, stage wiring -----------------------------------------------


def test_linear_probe_known_answers_and_label_fraction() -> None:
    from pipeline.training.probe import linear_probe, subsample_per_class

    rng = np.random.default_rng(0)
    centres = np.eye(3) * 5
    train_labels = [CLASSES[i % 3] for i in range(60)]
    train = np.stack([centres[i % 3] + rng.normal(0, 0.3, 3) for i in range(60)])
    test = np.stack([centres[i % 3] + rng.normal(0, 0.3, 3) for i in range(12)])
    test_labels = [CLASSES[i % 3] for i in range(12)] + ["acne"]
    test = np.vstack([test, np.zeros(3)])
    full = linear_probe(train, train_labels, test, test_labels)
    assert full["probe_top1"] == 1.0 and full["probe_balanced_acc"] == 1.0
    assert full["probe_n_train"] == 60 and full["probe_n_test"] == 12 and full["probe_n_excluded"] == 1
    few = linear_probe(train, train_labels, test, test_labels, label_fraction=0.1)
    assert few["probe_n_train"] == 6 and few["probe_label_fraction"] == 0.1
    assert subsample_per_class(["a"] * 5 + ["b"], 0.01) == sorted(subsample_per_class(["a"] * 5 + ["b"], 0.01))
    assert len(subsample_per_class(["a"] * 5 + ["b"], 0.01)) == 2  # at least one per class
    one_class = linear_probe(train[:3], ["x", "x", None], test, test_labels)
    assert one_class["probe_top1"] is None and one_class["probe_n_classes"] == 1
    with pytest.raises(PipelineError, match="label_fraction"):
        subsample_per_class(["a"], 0.0)


def _split_csv(folder: Path) -> tuple[Path, Path]:
    """A benchmark CSV with a split column (train/test) and a class-name file."""
    folder.mkdir()
    rng = random.Random(2)
    rows = ["image_path,label,split"]
    for i in range(16):
        label = CLASSES[i % 4]
        (folder / f"{i}.jpg").write_bytes(_jpeg(label, rng))
        rows.append(f"{i}.jpg,{label},{'test' if i >= 12 else 'train'}")
    (folder / "b.csv").write_text("\n".join(rows) + "\n")
    (folder / "names.txt").write_text("\n".join(CLASSES) + "\n")
    return folder / "b.csv", folder / "names.txt"


def test_evaluate_linear_probe_on_a_split_and_a_benchmark(trained: Path, shards: Path, tmp_path: Path) -> None:
    csv, names = _split_csv(tmp_path / "bench")
    bench = [{"name": "toy", "csv": str(csv), "classnames": str(names), "linear_probe": True}]
    metrics = evaluate(trained, "derm1m-tiny", shards / "holdout", DEFAULT_TEMPLATES, "cpu", 8, bench,
                       probe_dir=shards / "train", probe={"label_fraction": 0.5, "C": 1.0, "seed": 0})
    json.dumps(metrics, allow_nan=False)
    assert metrics["holdout/probe_n_train"] == 16 and metrics["holdout/probe_n_test"] == 10
    assert 0.0 <= metrics["holdout/probe_top1"] <= 1.0 and metrics["holdout/probe_label_fraction"] == 0.5
    # label_fraction 0.5 of 3 train rows per class: ceil(1.5) = 2 each
    assert metrics["toy/probe_n_train"] == 8 and metrics["toy/probe_n_test"] == 4
    assert metrics["toy/zeroshot_n_samples"] == 16 and metrics["toy/n_classes"] == 4
    no_split = [{"name": "bad", "csv": str(_benchmark_csv(tmp_path / "b2", shards)), "linear_probe": True}]
    with pytest.raises(PipelineError, match="split"):
        evaluate(trained, "derm1m-tiny", shards / "holdout", DEFAULT_TEMPLATES, "cpu", 8, no_split)
    with pytest.raises(PipelineError, match="classnames file"):
        evaluate(trained, "derm1m-tiny", shards / "holdout", DEFAULT_TEMPLATES, "cpu", 8,
                 [{"name": "x", "csv": str(csv), "classnames": str(tmp_path / "none.txt")}])


def test_ham10000_benchmark_csv_and_zero_shot(shared: Path, trained: Path, shards: Path, tmp_path: Path) -> None:
    import pandas as pd

    from pipeline.training.benchmark_csv import HAM10000_CLASSES, build_ham10000_csv, main

    out = tmp_path / "ham.csv"
    n, names = build_ham10000_csv(shared / "corpus/ham10000", out, per_class=3)
    frame = pd.read_csv(out)
    assert n == len(frame) == 21 and names == sorted(HAM10000_CLASSES.values())
    assert set(frame["label"]) == set(names) and set(frame["split"]) <= {"train", "test"}
    assert (tmp_path / "ham_classnames.txt").read_text().split("\n")[:7] == names
    meta = pd.read_csv(shared / "corpus/ham10000/HAM10000_metadata.csv")
    lesion = dict(zip(meta["image_id"], meta["lesion_id"], strict=True))
    frame["lesion"] = [lesion[Path(p).stem] for p in frame["image_path"]]
    assert (frame.groupby("lesion")["split"].nunique() == 1).all()  # no lesion on both sides
    bench = [{"name": "ham10000", "csv": str(out), "classnames": str(tmp_path / "ham_classnames.txt")}]
    metrics = evaluate(trained, "derm1m-tiny", shards / "holdout", DEFAULT_TEMPLATES, "cpu", 16, bench)
    assert metrics["ham10000/zeroshot_n_samples"] == 21 and metrics["ham10000/n_classes"] == 7
    assert 0.0 <= metrics["ham10000/zeroshot_top1"] <= 1.0
    assert main([str(tmp_path / "absent"), str(tmp_path / "x.csv")]) == 2


def test_train_and_evaluate_stage_config_errors(tmp_path: Path) -> None:
    from pipeline.cli import main
    from pipeline.stages.evaluate import probe_config
    from pipeline.stages.train import gpus_for, resolve_profile

    params = {"train": {"out": "models", "profile": "smoke", "device": "tpu", "profiles": {"smoke": SMOKE_PROFILE}}}
    with pytest.raises(PipelineError, match="train.device"):
        resolve_profile(params)
    params["train"]["device"] = "cpu"
    assert resolve_profile(params) == ("smoke", SMOKE_PROFILE)
    assert gpus_for(SMOKE_PROFILE) == 1
    if torch.cuda.device_count() < 64:
        with pytest.raises(PipelineError, match="64 GPUs"):
            gpus_for(SMOKE_PROFILE | {"gpus": 64})
    with pytest.raises(PipelineError, match="label_fraction"):
        probe_config({"linear_probe": {"train_split": "validation", "label_fraction": 2}})
    with pytest.raises(PipelineError, match="train_split"):
        probe_config({"linear_probe": {"train_split": "holdout"}})
    assert probe_config({"linear_probe": None}) == (None, {"label_fraction": 1.0, "C": 1.0, "seed": 0})
    # the CLI's --profile selects the profile; PanDerm without local weights is a one-line error
    assert main(["train", "--profile", "dermlip-panderm"]) == 2
    assert main(["train", "--profile", "no-such-profile"]) == 2


def test_explicit_train_num_samples_bounds_by_steps(shards: Path, tmp_path: Path) -> None:
    """``train_num_samples`` beyond the shards' count is passed as is (open_clip cycles the data)."""
    pattern, n = shard_pattern(shards / "train")
    argv = build_train_args(pattern, n, SMOKE_PROFILE | {"train_num_samples": 1000}, tmp_path, "x")
    assert argv[argv.index("--train-num-samples") + 1] == "1000"
    with pytest.raises(PipelineError, match="train_num_samples must be int"):
        build_train_args(pattern, n, SMOKE_PROFILE | {"train_num_samples": "many"}, tmp_path, "x")
