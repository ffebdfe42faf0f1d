"""Score a DermLIP checkpoint: holdout retrieval and zero-shot, plus benchmark CSVs.

Why one flat dict: DVC ``metrics`` files and experiment tables compare flat ``name: number``
JSON across runs; keys are ``<benchmark>/<metric>`` (``holdout/i2t_R@1``, ``holdout/n_samples``).
Deterministic for a given checkpoint: fixed seed, eval mode, no_grad, shards read in file order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from pipeline.errors import PipelineError
from pipeline.training.encode import encode_shards, load_model
from pipeline.training.retrieval import retrieval_metrics
from pipeline.training.shardset import list_shards
from pipeline.training.zeroshot import (
    DEFAULT_TEMPLATES,
    holdout_classes,
    zeroshot_from_csv,
    zeroshot_metrics,
)

__all__ = [
    "DEFAULT_TEMPLATES",
    "encode_shards",
    "evaluate",
    "load_model",
    "retrieval_metrics",
    "zeroshot_from_csv",
    "zeroshot_metrics",
]


def _prefixed(prefix: str, metrics: dict, rename: dict[str, str] | None = None) -> dict:
    rename = rename or {}
    return {f"{prefix}/{rename.get(k, k)}": v for k, v in metrics.items()}


_ZS_NAMES = {
    "top1": "zeroshot_top1",
    "top3": "zeroshot_top3",
    "balanced_acc": "zeroshot_balanced_acc",
    "n_samples": "zeroshot_n_samples",
    "n_excluded": "zeroshot_n_excluded",
}


def evaluate(
    checkpoint: Path,
    model_name: str,
    holdout_dir: Path,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    device: str = "cpu",
    batch_size: int = 64,
    benchmarks: Sequence[dict] = (),
) -> dict[str, float | int | None]:
    """Flat, JSON-serialisable metrics of ``checkpoint`` on the holdout split and benchmarks.

    Holdout: retrieval recall@1/5/10 both ways per unique ``image_id``, and zero-shot accuracy
    over the holdout's single-disease labels (``n_classes``; excluded samples counted).
    ``benchmarks`` items are ``{"name", "csv", "classnames"?: [...], "templates"?: [...]}``;
    each adds ``<name>/zeroshot_*`` keys. Accuracies are None when nothing could be scored.
    """
    if not templates:
        raise PipelineError("evaluation needs at least one zero-shot template containing '{}'")
    torch.manual_seed(0)
    model, preprocess, tokenizer = load_model(Path(checkpoint), model_name, device)
    tars, _ = list_shards(Path(holdout_dir))
    image_feats, text_feats, metadata = encode_shards(
        model, preprocess, tokenizer, tars, device, batch_size
    )
    # Captions of one duplicate cluster share pixels: score per canonical image.
    image_ids = [m.get("canonical_image_id") or m.get("image_id", m["__key__"]) for m in metadata]
    metrics: dict[str, float | int | None] = {
        "holdout/n_samples": len(metadata),
        "holdout/n_images": len(set(image_ids)),
    }
    metrics.update(_prefixed("holdout", retrieval_metrics(image_feats, text_feats, image_ids)))
    classnames, labels = holdout_classes(metadata)
    zs = zeroshot_metrics(model, tokenizer, image_feats, labels, classnames, templates, device)
    metrics.update(_prefixed("holdout", zs, _ZS_NAMES))
    for bench in benchmarks:
        name = bench.get("name")
        if not name or "csv" not in bench:
            raise PipelineError(f"benchmark {bench!r}: needs 'name' and 'csv'")
        result = zeroshot_from_csv(
            Path(bench["csv"]),
            bench.get("classnames"),
            model,
            preprocess,
            tokenizer,
            bench.get("templates") or templates,
            device,
            batch_size,
        )
        metrics.update(_prefixed(name, result, _ZS_NAMES))
    return metrics
