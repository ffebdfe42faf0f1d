"""DermLIP's seed recipe from params.yaml, offline weight resolution, and resuming a killed run.

The seed's ViT-B-16 command (Derm1M's published open_clip_train call) is pinned here as a
string; the argv our ``dermlip-vitb16`` profile generates must parse to the same trainer
settings, apart from paths, data format and machine-local knobs. The resume test SIGKILLs a
real smoke training subprocess after its first epoch checkpoint and checks the rerun continues
from it.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import open_clip
import pytest
import torch
import yaml
from open_clip_train.params import parse_args
from test_training import CLASSES, SMOKE_PROFILE, _sample, _write_split

from pipeline.errors import PipelineError
from pipeline.training.pretrained import Weights, resolve_weights
from pipeline.training.train import (
    RUN_ARGV,
    aug_cfg_args,
    build_train_args,
    check_profile_inputs,
    run_training,
)

REPO = Path(__file__).resolve().parents[1]
# Derm1M's ViT-B-16 training command (its README), data paths as the seed wrote them.
SEED_COMMAND = """
python -m open_clip_train.main
    --train-data data/Derm1M/Derm1M_v2_pretrain.csv --dataset-type csv --csv-separator ,
    --csv-img-key filename --csv-caption-key truncated_caption
    --model ViT-B-16 --pretrained openai
    --aug-cfg scale='(0.4, 1.0)' color_jitter='(0.32, 0.32, 0.32, 0.08)' color_jitter_prob=0.8
        gray_scale_prob=0.2
    --dataset-resampled
    --batch-size 4096 --lr 1e-4 --wd 0.1 --warmup 1000 --epochs 30
    --local-loss --grad-checkpointing
    --workers 16 --save-frequency 1 --report-to wandb --logs logs/ --name dermlip-vitb16
"""
# Where the two commands may differ: data location and format (we read WebDataset shards whose
# txt is the truncated caption), machine-local knobs, and logging/checkpoint destinations.
NOT_RECIPE = {
    "train_data", "dataset_type", "csv_separator", "csv_img_key", "csv_caption_key", "train_num_samples",
    "val_data", "val_num_samples", "workers", "device", "logs", "name", "report_to", "save_frequency",
    "zeroshot_frequency", "log_every_n_steps",
}


def _params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def _whole(path: Path) -> bool:
    """A torch checkpoint (a zip) whose central directory, written last, is there."""
    try:
        with zipfile.ZipFile(path):
            return True
    except (OSError, zipfile.BadZipFile):
        return False


def _shards(root: Path, n: int = 32, per_shard: int = 8) -> Path:
    rng = random.Random(0)
    _write_split(root, "train", [_sample("train", i, CLASSES[i % 4], rng) for i in range(n)], per_shard)
    return root / "train"


def test_vitb16_profile_argv_equals_the_seed_command(tmp_path: Path) -> None:
    """The recipe flags of params.yaml's dermlip-vitb16 are the seed's, flag for flag."""
    profile = _params()["train"]["profiles"]["dermlip-vitb16"]
    train = _shards(tmp_path)
    ours = parse_args(build_train_args(f"{train}/train-{{000000..000003}}.tar", 32, profile, tmp_path, "x"))
    seed = parse_args(shlex.split(SEED_COMMAND)[3:])
    differ = {k: (getattr(seed, k), getattr(ours, k)) for k in vars(seed)
              if k not in NOT_RECIPE and getattr(seed, k) != getattr(ours, k)}
    assert differ == {}
    assert ours.pretrained == "openai" and ours.dataset_resampled
    assert ours.aug_cfg == {"scale": (0.4, 1.0), "color_jitter": (0.32, 0.32, 0.32, 0.08),
                            "color_jitter_prob": 0.8, "gray_scale_prob": 0.2}
    assert ours.train_data.endswith(".tar") and ours.dataset_type == "webdataset"
    panderm = _params()["train"]["profiles"]["dermlip-panderm"]
    assert panderm["aug_cfg"] == profile["aug_cfg"] and panderm["dataset_resampled"]


# open_clip 3.3 warns that color_jitter/gray_scale are "unused" although it applies them (checked below).
@pytest.mark.filterwarnings("ignore:Unused augmentation cfg items")
def test_aug_cfg_reaches_open_clip_transform() -> None:
    """What --aug-cfg parses to builds open_clip's train transform with the seed's jitter/grey."""
    args = parse_args(["--aug-cfg", *aug_cfg_args({"scale": [0.4, 1.0], "color_jitter_prob": 0.8,
                                                   "color_jitter": [0.32, 0.32, 0.32, 0.08],
                                                   "gray_scale_prob": 0.2})[1:]])
    transform = open_clip.image_transform(224, is_train=True, aug_cfg=args.aug_cfg)
    names = [type(t).__name__ for t in transform.transforms]
    assert names[0] == "RandomResizedCrop" and transform.transforms[0].scale == (0.4, 1.0)
    assert "color_jitter" in names and "gray_scale" in names  # open_clip's wrappers, p=0.8 and 0.2
    with pytest.raises(PipelineError, match="aug_cfg key"):
        check_profile_inputs(SMOKE_PROFILE | {"aug_cfg": {"colour_jitter": [0.1, 0.1, 0.1, 0.1]}})


def test_offline_pretrained_tag_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An uncached tag or hub id says how to pre-download it; a local file and no weights pass."""
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty ~/.cache/clip
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(PipelineError) as err:
        check_profile_inputs(_params()["train"]["profiles"]["dermlip-vitb16"])
    message = str(err.value)
    assert "\n" not in message and "'openai' of ViT-B-16 is not in the local cache" in message
    assert "create_model('ViT-B-16', pretrained='openai')" in message
    with pytest.raises(PipelineError, match="hf-hub:org/dermlip is not in the local Hugging Face cache"):
        resolve_weights("ViT-B-16", "hf-hub:org/dermlip")
    with pytest.raises(PipelineError, match="neither a local file nor an open_clip tag"):
        resolve_weights("ViT-B-16", "opneai")
    with pytest.raises(PipelineError, match="is not a local file"):
        resolve_weights("derm1m-tiny", str(tmp_path / "absent.pt"))
    ckpt = tmp_path / "tiny.pt"
    torch.save({"state_dict": open_clip.create_model("derm1m-tiny").state_dict()}, ckpt)
    assert resolve_weights("derm1m-tiny", str(ckpt)).kind == "file"
    assert resolve_weights("derm1m-tiny", None).kind == "none"
    # a cached tag resolves without a network: open_clip fetches tags with a hub entry from the
    # hub only, so a file in ~/.cache/clip does not count; one in the hub cache does
    url = open_clip.get_pretrained_cfg("RN50", "openai")["url"]
    (tmp_path / ".cache" / "clip").mkdir(parents=True)
    (tmp_path / ".cache" / "clip" / os.path.basename(url)).write_bytes(b"weights")
    with pytest.raises(PipelineError, match="not in the local cache"):
        resolve_weights("RN50", "openai")
    snap = tmp_path / "hf" / "models--timm--resnet50_clip.openai" / "snapshots" / "0"
    snap.mkdir(parents=True)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0")
    (snap / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    assert resolve_weights("RN50", "openai") == Weights("RN50", "openai", "tag")


def test_hf_hub_pretrained_becomes_the_model(tmp_path: Path) -> None:
    argv = build_train_args(f"{_shards(tmp_path)}/train-000000.tar", 8,
                            SMOKE_PROFILE | {"pretrained": "hf-hub:redlessone/DermLIP_ViT-B-16"}, tmp_path, "x")
    args = parse_args(argv)
    assert args.model == "hf-hub:redlessone/DermLIP_ViT-B-16" and args.pretrained == ""


@pytest.mark.slow
def test_killed_training_resumes_from_its_latest_checkpoint(tmp_path: Path) -> None:
    """SIGKILL a 3-epoch smoke run after epoch 1; the rerun resumes at epoch 2, not from scratch."""
    train = _shards(tmp_path / "shards")
    profile = SMOKE_PROFILE | {"epochs": 3, "max_train_samples": 16, "deterministic": True}
    logs = tmp_path / "models"
    script = ("import json, sys; from pipeline.training.train import run_training; "
              "run_training(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], 'smoke')")
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1")
    proc = subprocess.Popen([sys.executable, "-c", script, str(train), json.dumps(profile), str(logs)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staged = logs / ".partial" / "smoke"
    first = staged / "checkpoints" / "epoch_1.pt"
    deadline = time.monotonic() + 240
    while not _whole(first) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _whole(first), "the smoke run never wrote its first epoch checkpoint"
    assert not (logs / "smoke").exists() and (logs / ".partial" / RUN_ARGV.format(name="smoke")).is_file()
    killed_at = max(int(p.stem.split("_")[1]) for p in (staged / "checkpoints").glob("epoch_*.pt")
                    if _whole(p))
    assert killed_at < 3, "the run finished before it was killed: nothing was resumed"
    # a kill during open_clip's in-place checkpoint write leaves half a file: it must be skipped
    half = staged / "checkpoints" / f"epoch_{killed_at + 1}.pt"
    half.write_bytes(first.read_bytes()[: first.stat().st_size // 2])

    final = run_training(train, profile, logs, "smoke")
    assert final == logs / "smoke" / "checkpoints" / "epoch_3.pt"
    log_text = (logs / "smoke" / "out.log").read_text()
    assert f"=> resuming checkpoint '{logs}/.partial/smoke/checkpoints/epoch_{killed_at}.pt'" in log_text \
        or f"resuming checkpoint '{logs}/smoke/checkpoints/epoch_{killed_at}.pt'" in log_text
    assert torch.load(final, map_location="cpu", weights_only=True)["epoch"] == 3
    assert not (logs / ".partial").exists()

    # a changed recipe does not resume a leftover: it starts over
    staged.mkdir(parents=True)
    (staged / "checkpoints").mkdir()
    torch.save({"epoch": 1}, staged / "checkpoints" / "epoch_1.pt")
    (logs / ".partial" / RUN_ARGV.format(name="smoke")).write_text(json.dumps(["--lr", "9"]))
    again = run_training(train, profile | {"epochs": 1}, logs, "smoke")
    assert "resuming" not in (logs / "smoke" / "out.log").read_text() and again.name == "epoch_1.pt"


def _fake_hub_repo(cache: Path, repo: str, state: dict) -> None:
    """A Hugging Face cache entry for ``repo`` holding a derm1m-tiny open_clip model."""
    from safetensors.torch import save_file

    folder = cache / f"models--{repo.replace('/', '--')}"
    snap = folder / "snapshots" / "0"
    snap.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0")
    cfg = json.loads((REPO / "pipeline/training/model_configs/derm1m-tiny.json").read_text())
    (snap / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / "open_clip_model.safetensors"))


def test_hf_hub_model_from_the_local_cache_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached hub id resolves and loads with the network off; a profile trained from it is
    evaluated with our checkpoint on top (open_clip alone would ignore the file for a hub model)."""
    import huggingface_hub.constants as hf_constants

    from pipeline.training.configs import register_model_configs
    from pipeline.training.models import load_weights, parse_model_spec

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    register_model_configs()
    torch.manual_seed(1)
    hub_state = open_clip.create_model("derm1m-tiny").state_dict()
    _fake_hub_repo(tmp_path / "hub", "org/tiny", hub_state)
    spec = parse_model_spec("hub=hf-hub:org/tiny", {}, tmp_path)
    assert spec.weights.model == "hf-hub:org/tiny" and spec.weights.kind == "hf-hub"
    model, _, tokenizer = load_weights(spec.weights, "cpu")
    assert torch.equal(model.state_dict()["visual.conv1.weight"], hub_state["visual.conv1.weight"])
    assert tokenizer(["a papule"]).shape == (1, 77)

    torch.manual_seed(2)
    ours = open_clip.create_model("derm1m-tiny").state_dict()
    run = tmp_path / "models" / "ft" / "checkpoints"
    run.mkdir(parents=True)
    torch.save({"epoch": 1, "state_dict": ours}, run / "epoch_1.pt")
    profiles = {"ft": SMOKE_PROFILE | {"pretrained": "hf-hub:org/tiny"}}
    check_profile_inputs(profiles["ft"])
    trained = parse_model_spec("ft", profiles, tmp_path / "models")
    model, _, _ = load_weights(trained.weights, "cpu")
    assert torch.equal(model.state_dict()["visual.conv1.weight"], ours["visual.conv1.weight"])
