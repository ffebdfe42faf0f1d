"""Stage ``train``: DermLIP with open_clip on the train shards, profile from params.yaml.

``smoke`` (default) builds a tiny CLIP from a config and runs one short epoch on CPU, so the
whole pipeline is exercised on any machine; ``dermlip-vitb16`` is the seed recipe for a GPU
(``gpus: N`` > 1 runs it under torchrun, one process per GPU); ``dermlip-panderm`` needs a
PanDerm vision checkpoint and a text encoder on local disk and says so when they are absent.
Logs and checkpoints land in ``models/<profile>/`` (the stage's DVC out).
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.errors import ConfigError, PipelineError
from pipeline.params import section
from pipeline.stages import StageResult, Timer
from pipeline.training.train import checkpoint_path, run_training


def resolve_profile(params: dict) -> tuple[str, dict]:
    """The selected profile's name and settings, with ``train.device`` applied when not auto."""
    cfg = section(params, "train", {"out": str, "profile": str, "profiles": dict, "device": str})
    name = cfg["profile"]
    if name not in cfg["profiles"]:
        raise ConfigError(f"params.yaml: train.profile {name!r} is not one of {sorted(cfg['profiles'])}")
    if cfg["device"] not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"params.yaml: train.device {cfg['device']!r} is not one of auto, cpu, cuda")
    profile = dict(cfg["profiles"][name] or {})
    if cfg["device"] != "auto":
        profile["device"] = cfg["device"]
    return name, profile


def gpus_for(profile: dict) -> int:
    """Processes to launch: the profile's ``gpus`` (default 1), checked against the machine.

    Why here: open_clip_train would fail deep inside NCCL setup; asking for more GPUs than the
    machine has is a one-line configuration error.
    """
    gpus = int(profile.get("gpus") or 1)
    if gpus < 1:
        raise ConfigError(f"params.yaml: train profile gpus must be >= 1, got {gpus}")
    if gpus > 1:
        available = torch.cuda.device_count()
        if available < gpus:
            raise PipelineError(f"training profile asks for {gpus} GPUs but this machine has {available}; "
                                "lower the profile's gpus")
    return gpus


def run(params: dict) -> StageResult:
    name, profile = resolve_profile(params)
    out = Path(section(params, "train", {"out": str})["out"])
    shards = Path(section(params, "shard", {"out": str})["out"])
    with Timer(StageResult("train")) as result:
        ckpt = run_training(shards / "train", profile, out, name, val_dir=None, nproc_per_node=gpus_for(profile))
        expected = checkpoint_path(out, name, profile["epochs"])
        result.extra = {"checkpoint": str(ckpt if ckpt.exists() else expected)}
    return result
