"""Stage ``evaluate``: zero-shot, image<->text recall@1/5/10 and a linear probe on the holdout split.

Writes ``metrics/eval.json`` (flat ``benchmark/metric`` keys) for ``dvc metrics show``; each
benchmark CSV in ``evaluate.benchmarks`` adds its own ``<name>/...`` keys.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.errors import ConfigError
from pipeline.params import section
from pipeline.stages import StageResult, Timer
from pipeline.stages.train import resolve_profile
from pipeline.tables import write_json
from pipeline.training.evaluate import evaluate
from pipeline.training.panderm import register_config
from pipeline.training.train import checkpoint_path, is_panderm_profile


def probe_config(cfg: dict) -> tuple[str | None, dict]:
    """The linear probe's fit split (None: no probe) and its settings, type-checked."""
    probe = cfg.get("linear_probe") or {}
    if not isinstance(probe, dict):
        raise ConfigError("params.yaml: evaluate.linear_probe must be a mapping (or null for no probe)")
    split = probe.get("train_split")
    if split not in (None, "train", "validation"):
        raise ConfigError(f"params.yaml: evaluate.linear_probe.train_split {split!r} must be train or validation")
    fraction = probe.get("label_fraction", 1.0)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise ConfigError(f"params.yaml: evaluate.linear_probe.label_fraction must be in (0, 1], got {fraction!r}")
    return split, {"label_fraction": float(fraction), "C": float(probe.get("C", 1.0)), "seed": int(probe.get("seed", 0))}


def run(params: dict) -> StageResult:
    cfg = section(params, "evaluate", {"out": str, "batch_size": int, "templates": list})
    name, profile = resolve_profile(params)
    models = Path(section(params, "train", {"out": str})["out"])
    shards = Path(section(params, "shard", {"out": str})["out"])
    device = profile.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    probe_split, probe = probe_config(cfg)
    benchmarks = cfg.get("benchmarks") or []
    if not isinstance(benchmarks, list) or not all(isinstance(b, dict) for b in benchmarks):
        raise ConfigError("params.yaml: evaluate.benchmarks must be a list of {name, csv, ...} mappings")
    with Timer(StageResult("evaluate")) as result:
        if is_panderm_profile(profile):  # its model config is generated, not bundled
            register_config(profile, models, name)
        metrics = evaluate(checkpoint_path(models, name, profile["epochs"]), profile["model"], shards / "holdout",
                           templates=cfg["templates"], device=device, batch_size=cfg["batch_size"],
                           benchmarks=benchmarks, probe_dir=shards / probe_split if probe_split else None,
                           probe=probe)
        metrics = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()}
        metrics["profile"] = name
        write_json(metrics, Path(cfg["out"]) / "eval.json")
        result.rows_in = result.rows_out = int(metrics.get("holdout/n_samples", 0) or 0)
        result.extra = {k.split("/")[1]: metrics[k] for k in ("holdout/i2t_R@1", "holdout/zeroshot_top1",
                                                               "holdout/probe_top1") if k in metrics}
    return result
