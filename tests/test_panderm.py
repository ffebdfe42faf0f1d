"""DermLIP-PanDerm on real (tiny) encoders: a timm ViT checkpoint and a local Hugging Face BERT.

The vision "PanDerm" checkpoint is a randomly initialised timm ViT-Tiny saved the way ViT
pretraining code saves it (wrapped, ``module.``-prefixed, BEiT-style ``q_bias``/``v_bias``); the
text encoder is a one-layer BERT written with ``save_pretrained``. open_clip_train then trains
the combined CLIP for a few steps on CPU, and the evaluator scores it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from pipeline.errors import PipelineError

transformers = pytest.importorskip("transformers", reason="transformers is needed for a Hugging Face text tower")
timm = pytest.importorskip("timm")

WORDS = ["clinical", "photo", "showing", "acne", "eczema", "melanoma", "psoriasis", "on", "the", "forearm",
         "a", "of", "dermoscopic", "image", "this", "is", "an", "skin", "condition", ".", ","]


def _bert(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    config = transformers.BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    return folder


def _vision_checkpoint(path: Path, arch: str = "vit_tiny_patch16_224") -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    state = timm.create_model(arch, pretrained=False, num_classes=0).state_dict()
    saved = {}
    for key, value in state.items():
        if key.endswith("attn.qkv.bias"):  # BEiT/CAE layout: q and v biases, no k bias
            q, _, v = value.chunk(3)
            saved[f"module.{key[:-len('qkv.bias')]}q_bias"] = q
            saved[f"module.{key[:-len('qkv.bias')]}v_bias"] = v
        else:
            saved[f"module.{key}"] = value
    saved["module.rel_pos_bias.table"] = torch.zeros(3)  # a tensor timm's ViT has no place for
    torch.save({"model": saved, "epoch": 100}, path)
    return state


def _shards(root: Path) -> Path:
    from pipeline.shards.writer import Sample, ShardOptions, encode_jpeg, write_split

    rng = random.Random(0)
    samples = []
    for i in range(16):
        label = ["acne", "eczema", "melanoma", "psoriasis"][i % 4]
        img = Image.new("RGB", (64, 64), (rng.randint(0, 255), 120, 90 + 40 * (i % 4)))
        path = root / "img" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, quality=90)
        samples.append(Sample(f"s{i:03d}", f"s{i:03d}", str(path), "", ((f"p{i}", f"clinical photo showing {label}"),),
                              {"pair_id": f"p{i}", "image_id": f"s{i:03d}", "disease_label": label}))
    write_split("train", samples, root / "train", ShardOptions(4),
                lambda chunk: [encode_jpeg(s.image_path, 64, 90) for s in chunk])
    return root / "train"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("panderm")
    state = _vision_checkpoint(root / "panderm.pth")
    return {"root": root, "state": state, "bert": _bert(root / "bert"), "train": _shards(root),
            "profile": {"model": "dermlip-panderm", "vision_checkpoint": str(root / "panderm.pth"),
                        "text_encoder": str(root / "bert"), "vision_model": "vit_tiny_patch16_224",
                        "context_length": 32, "embed_dim": 32, "epochs": 1, "batch_size": 8, "lr": 1e-4,
                        "wd": 0.1, "warmup": 1, "workers": 0, "precision": "fp32", "local_loss": False,
                        "gather_with_grad": False, "grad_checkpointing": False, "seed": 0, "device": "cpu"}}


def test_initial_checkpoint_carries_the_vision_weights(inputs: dict, tmp_path: Path) -> None:
    from pipeline.training.panderm import build_initial_checkpoint

    init = build_initial_checkpoint(inputs["profile"], tmp_path, "panderm")
    state = torch.load(init, map_location="cpu", weights_only=True)["state_dict"]
    for key in ("blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "patch_embed.proj.weight", "pos_embed"):
        expected = inputs["state"][key]
        if key.endswith("qkv.bias"):  # the k third was not in the checkpoint: zero, like BEiT
            q, _, v = expected.chunk(3)
            expected = torch.cat([q, torch.zeros_like(q), v])
        assert torch.equal(state[f"visual.trunk.{key}"], expected), key
    assert any(k.startswith("text.transformer.") for k in state)
    config = json.loads((tmp_path / "panderm-model" / "dermlip-panderm.json").read_text())
    assert config["text_cfg"]["hf_model_name"] == str(inputs["bert"].resolve())


def test_bad_vision_checkpoints_are_one_line_errors(inputs: dict, tmp_path: Path) -> None:
    from pipeline.training.panderm import build_initial_checkpoint

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PipelineError, match="not a readable torch checkpoint"):
        build_initial_checkpoint(inputs["profile"] | {"vision_checkpoint": str(tmp_path / "garbage.pth")},
                                 tmp_path, "bad")
    _vision_checkpoint(tmp_path / "small.pth", arch="vit_small_patch16_224")
    with pytest.raises(PipelineError, match="tensors match by name and shape"):
        build_initial_checkpoint(inputs["profile"] | {"vision_checkpoint": str(tmp_path / "small.pth")},
                                 tmp_path, "wrong-arch")
    with pytest.raises(PipelineError, match="text encoder"):
        build_initial_checkpoint(inputs["profile"] | {"text_encoder": str(tmp_path)}, tmp_path, "no-bert")


@pytest.mark.slow
def test_panderm_profile_trains_and_evaluates(inputs: dict, tmp_path: Path) -> None:
    from pipeline.training.evaluate import evaluate
    from pipeline.training.train import run_training

    ckpt = run_training(inputs["train"], inputs["profile"], tmp_path, "dermlip-panderm")
    assert ckpt.is_file()
    params = (tmp_path / "dermlip-panderm" / "params.txt").read_text()
    assert f"pretrained: {tmp_path / 'dermlip-panderm-init.pt'}" in params
    metrics = evaluate(ckpt, "dermlip-panderm", inputs["train"], ["a clinical photo of {}."], "cpu", 8)
    assert metrics["holdout/n_samples"] == 16 and metrics["holdout/n_classes"] == 4
    assert 0.0 <= metrics["holdout/i2t_R@1"] <= 1.0
