"""Stage ``train``: DermLIP with open_clip on the train shards, profile from params.yaml.

``smoke`` (default) builds a tiny CLIP from a config and runs one short epoch on CPU, so the
whole pipeline is exercised on any machine; ``dermlip-vitb16`` is the seed recipe for a GPU.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.params import section
from pipeline.stages import StageResult, Timer
from pipeline.training.train import checkpoint_path, run_training


def resolve_profile(params: dict) -> tuple[str, dict]:
    cfg = section(params, "train", {"out": str, "profile": str, "profiles": dict, "device": str})
    name = cfg["profile"]
    if name not in cfg["profiles"]:
        raise ConfigError(f"params.yaml: train.profile {name!r} is not one of {sorted(cfg['profiles'])}")
    profile = dict(cfg["profiles"][name])
    if cfg["device"] != "auto":
        profile["device"] = cfg["device"]
    return name, profile


def run(params: dict) -> StageResult:
    name, profile = resolve_profile(params)
    out = Path(section(params, "train", {"out": str})["out"])
    shards = Path(section(params, "shard", {"out": str})["out"])
    with Timer(StageResult("train")) as result:
        ckpt = run_training(shards / "train", profile, out, name, val_dir=None)
        expected = checkpoint_path(out, name, profile["epochs"])
        result.extra = {"checkpoint": str(ckpt if ckpt.exists() else expected)}
    return result
