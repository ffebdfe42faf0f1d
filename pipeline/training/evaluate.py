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
from pipeline.training.probe import linear_probe
from pipeline.training.retrieval import retrieval_metrics
from pipeline.training.shardset import list_shards
from pipeline.training.zeroshot import (
    DEFAULT_TEMPLATES,
    BenchmarkFeatures,
    encode_benchmark,
    holdout_classes,
    zeroshot_from_csv,
    zeroshot_metrics,
)

__all__ = [
    "DEFAULT_TEMPLATES",
    "encode_shards",
    "evaluate",
    "linear_probe",
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


def _classnames(bench: dict) -> list[str] | None:
    """A benchmark's class names: a list in params, or a text file with one name per line."""
    names = bench.get("classnames")
    if names is None or isinstance(names, list):
        return names
    path = Path(str(names))
    if not path.is_file():
        raise PipelineError(f"benchmark {bench.get('name')!r}: classnames file {path} does not exist")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate(
    checkpoint: Path,
    model_name: str,
    holdout_dir: Path,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    device: str = "cpu",
    batch_size: int = 64,
    benchmarks: Sequence[dict] = (),
    probe_dir: Path | None = None,
    probe: dict | None = None,
) -> dict[str, float | int | None]:
    """Flat, JSON-serialisable metrics of ``checkpoint`` on the holdout split and benchmarks.

    Holdout: retrieval recall@1/5/10 both ways per unique ``image_id``, and zero-shot accuracy
    over the holdout's single-disease labels (``n_classes``; excluded samples counted). With
    ``probe_dir`` (a split's shard folder, e.g. validation) a linear probe is fitted on that
    split's frozen image features and scored on the holdout (``holdout/probe_*``); ``probe``
    holds ``label_fraction``, ``C`` and ``seed``. ``benchmarks`` items are ``{"name", "csv",
    "classnames"?: [...] or a .txt path, "templates"?: [...], "linear_probe"?: bool}``; each adds
    ``<name>/zeroshot_*`` keys, and a probe fitted on the CSV's ``split == train`` rows and scored
    on its ``test`` rows when ``linear_probe`` is set. Accuracies are None when nothing could be
    scored.
    """
    if not templates:
        raise PipelineError("evaluation needs at least one zero-shot template containing '{}'")
    probe = {"label_fraction": 1.0, "C": 1.0, "seed": 0, **(probe or {})}
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
    if probe_dir is not None:
        fit_tars, _ = list_shards(Path(probe_dir))
        fit_feats, _, fit_meta = encode_shards(model, preprocess, tokenizer, fit_tars, device, batch_size)
        _, fit_labels = holdout_classes(fit_meta)
        metrics.update(_prefixed("holdout", linear_probe(
            fit_feats, fit_labels, image_feats, labels, probe["label_fraction"], probe["C"], probe["seed"])))
    for bench in benchmarks:
        name = bench.get("name")
        if not name or "csv" not in bench:
            raise PipelineError(f"benchmark {bench!r}: needs 'name' and 'csv'")
        encoded = encode_benchmark(Path(bench["csv"]), _classnames(bench), model, preprocess, device, batch_size)
        result = zeroshot_from_csv(
            Path(bench["csv"]), None, model, preprocess, tokenizer,
            bench.get("templates") or templates, device, batch_size, encoded=encoded,
        )  # fmt: skip
        metrics.update(_prefixed(name, result, _ZS_NAMES))
        if bench.get("linear_probe"):
            metrics.update(_prefixed(name, _benchmark_probe(name, encoded, probe)))
    return metrics


def _benchmark_probe(name: str, encoded: BenchmarkFeatures, probe: dict) -> dict[str, float | int | None]:
    """Linear probe on a benchmark CSV's own train/test rows (its ``split`` column)."""
    if not {"train", "test"} <= set(encoded.splits):
        raise PipelineError(f"benchmark {name!r}: linear_probe needs a 'split' column with train and test rows")
    train = [i for i, s in enumerate(encoded.splits) if s == "train"]
    test = [i for i, s in enumerate(encoded.splits) if s == "test"]
    return linear_probe(encoded.features[train], [encoded.labels[i] for i in train],
                        encoded.features[test], [encoded.labels[i] for i in test],
                        probe["label_fraction"], probe["C"], probe["seed"])
