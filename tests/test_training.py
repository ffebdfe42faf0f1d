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


def test_profile_checks(tmp_path: Path) -> None:
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
    with pytest.raises(PipelineError, match="not implemented yet"):
        run_training(tmp_path, panderm, tmp_path / "logs", "panderm")


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
