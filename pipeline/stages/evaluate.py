"""Stage ``evaluate``: zero-shot accuracy and image<->text recall@1/5/10 on the holdout split.

Writes ``metrics/eval.json`` (flat ``benchmark/metric`` keys) for ``dvc metrics show``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.params import section
from pipeline.stages import StageResult, Timer
from pipeline.stages.train import resolve_profile
from pipeline.tables import write_json
from pipeline.training.evaluate import evaluate
from pipeline.training.train import checkpoint_path


def run(params: dict) -> StageResult:
    cfg = section(params, "evaluate", {"out": str, "batch_size": int, "templates": list})
    name, profile = resolve_profile(params)
    models = Path(section(params, "train", {"out": str})["out"])
    shards = Path(section(params, "shard", {"out": str})["out"])
    device = profile.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    with Timer(StageResult("evaluate")) as result:
        metrics = evaluate(checkpoint_path(models, name, profile["epochs"]), profile["model"], shards / "holdout",
                           templates=cfg["templates"], device=device, batch_size=cfg["batch_size"],
                           benchmarks=cfg.get("benchmarks") or ())
        metrics = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()}
        metrics["profile"] = name
        write_json(metrics, Path(cfg["out"]) / "eval.json")
        result.rows_in = result.rows_out = int(metrics.get("holdout/n_samples", 0) or 0)
        result.extra = {k.split("/")[1]: metrics[k] for k in ("holdout/i2t_R@1", "holdout/zeroshot_top1") if k in metrics}
    return result
