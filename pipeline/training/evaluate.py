"""Score a model: holdout retrieval, zero-shot and probe, plus Derm1M's benchmark suite from CSVs.

Why one flat dict: DVC ``metrics`` files and experiment tables compare flat ``name: number``
JSON across runs; keys are ``<benchmark>/<metric>`` (``holdout/i2t_R@1``, ``holdout/n_samples``).
Deterministic for a given checkpoint: fixed seed, eval mode, no_grad, shards read in file order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from pipeline.errors import PipelineError
from pipeline.training.encode import encode_shards, load_model
from pipeline.training.probe import linear_probe
from pipeline.training.retrieval import retrieval_metrics
from pipeline.training.shardset import list_shards
from pipeline.training.suite import DEFAULT_CONCEPT_TEMPLATES, concepts_from_csv, retrieval_from_csv
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
    "evaluate_model",
    "linear_probe",
    "load_model",
    "retrieval_metrics",
    "zeroshot_from_csv",
    "zeroshot_metrics",
]


def _prefixed(prefix: str, metrics: dict, rename: dict[str, str] | None = None) -> dict:
    rename = rename or {}
    return {f"{prefix}/{rename.get(k, k)}": v for k, v in metrics.items()}


BENCHMARK_KINDS = ("zeroshot", "concepts", "retrieval")
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


def _pct(fraction: float) -> str:
    """``0.01`` -> ``1pct``, ``0.1`` -> ``10pct``, ``0.025`` -> ``2.5pct``: a key-safe label ratio."""
    return f"{100 * fraction:g}pct"


def probe_metrics(train_x: torch.Tensor, train_y: Sequence[str | None], test_x: torch.Tensor,
                  test_y: Sequence[str | None], probe: dict) -> dict[str, float | int | None]:
    """One linear probe per label ratio: ``label_fractions`` [0.01, 0.1, 1.0] gives
    ``probe_1pct_*``, ``probe_10pct_*``, ``probe_100pct_*``; a single ``label_fraction`` keeps the
    plain ``probe_*`` keys. Each ratio is its own seeded per-class subsample."""
    fractions = probe.get("label_fractions")
    if not fractions:
        return linear_probe(train_x, train_y, test_x, test_y, probe.get("label_fraction", 1.0), probe["C"], probe["seed"])
    out: dict[str, float | int | None] = {}
    for fraction in fractions:
        result = linear_probe(train_x, train_y, test_x, test_y, float(fraction), probe["C"], probe["seed"])
        out.update({k.replace("probe_", f"probe_{_pct(float(fraction))}_", 1): v for k, v in result.items()})
    return out


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
    """:func:`evaluate_model` of an open_clip_train checkpoint of ``model_name``."""
    if not templates:
        raise PipelineError("evaluation needs at least one zero-shot template containing '{}'")
    torch.manual_seed(0)
    model, preprocess, tokenizer = load_model(Path(checkpoint), model_name, device)
    return evaluate_model(model, preprocess, tokenizer, holdout_dir, templates, device, batch_size, benchmarks,
                          probe_dir, probe)


def evaluate_model(
    model: torch.nn.Module,
    preprocess: Callable,
    tokenizer: Callable,
    holdout_dir: Path | None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    device: str = "cpu",
    batch_size: int = 64,
    benchmarks: Sequence[dict] = (),
    probe_dir: Path | None = None,
    probe: dict | None = None,
    concept_templates: Sequence[str] = DEFAULT_CONCEPT_TEMPLATES,
) -> dict[str, float | int | None]:
    """Flat, JSON-serialisable metrics of a model on the holdout split and the benchmark suite.

    Holdout (skipped when ``holdout_dir`` is None): retrieval recall@1/5/10 both ways per unique
    ``image_id``, and zero-shot accuracy over the holdout's single-disease labels (``n_classes``;
    excluded samples counted). With ``probe_dir`` (a split's shard folder, e.g. validation) a
    linear probe is fitted on that split's frozen image features and scored on the holdout
    (``holdout/probe_*``; see :func:`probe_metrics` for label ratios); ``probe`` holds
    ``label_fraction(s)``, ``C`` and ``seed``. ``benchmarks`` items are ``{"name", "csv",
    "kind"?}``:

    - ``kind: zeroshot`` (default; ``classnames``: a list or a .txt path, ``templates``,
      ``linear_probe``): ``<name>/zeroshot_*`` keys, and a probe fitted on the CSV's
      ``split == train`` rows and scored on its ``test`` rows when ``linear_probe`` is set;
      ``zeroshot_mean/*`` averages top-1 and balanced accuracy over these benchmarks;
    - ``kind: concepts`` (``templates``: concept prompt templates): per-concept AUROC,
      ``<name>/concept_auroc_mean``;
    - ``kind: retrieval``: ``<name>/i2t_R@K`` and ``t2i_R@K`` on an image_path,caption CSV.

    Accuracies are None when nothing could be scored.
    """
    if not templates:
        raise PipelineError("evaluation needs at least one zero-shot template containing '{}'")
    probe = {"C": 1.0, "seed": 0, **(probe or {})}
    if not probe.get("label_fractions"):
        probe.setdefault("label_fraction", 1.0)
    torch.manual_seed(0)
    metrics: dict[str, float | int | None] = {}
    if holdout_dir is not None:
        metrics.update(_holdout(model, preprocess, tokenizer, Path(holdout_dir), templates, device, batch_size,
                                probe_dir, probe))
    means: dict[str, list[float]] = {"top1": [], "balanced_acc": []}
    for bench in benchmarks:
        name, kind = bench.get("name"), bench.get("kind", "zeroshot")
        if not name or "csv" not in bench:
            raise PipelineError(f"benchmark {bench!r}: needs 'name' and 'csv'")
        if kind not in BENCHMARK_KINDS:
            raise PipelineError(f"benchmark {name!r}: kind {kind!r} is not one of {BENCHMARK_KINDS}")
        if kind == "concepts":
            metrics.update(_prefixed(name, concepts_from_csv(
                Path(bench["csv"]), model, preprocess, tokenizer, bench.get("templates") or concept_templates,
                device, batch_size)))
            continue
        if kind == "retrieval":
            metrics.update(_prefixed(name, retrieval_from_csv(Path(bench["csv"]), model, preprocess, tokenizer,
                                                              device, batch_size)))
            continue
        encoded = encode_benchmark(Path(bench["csv"]), _classnames(bench), model, preprocess, device, batch_size)
        result = zeroshot_from_csv(
            Path(bench["csv"]), None, model, preprocess, tokenizer,
            bench.get("templates") or templates, device, batch_size, encoded=encoded,
        )  # fmt: skip
        metrics.update(_prefixed(name, result, _ZS_NAMES))
        for key in means:
            if result.get(key) is not None:
                means[key].append(float(result[key]))
        if bench.get("linear_probe"):
            metrics.update(_prefixed(name, _benchmark_probe(name, encoded, probe)))
    if means["top1"]:
        metrics["zeroshot_mean/top1"] = sum(means["top1"]) / len(means["top1"])
        metrics["zeroshot_mean/balanced_acc"] = sum(means["balanced_acc"]) / len(means["balanced_acc"])
        metrics["zeroshot_mean/n_benchmarks"] = len(means["top1"])
    return metrics


def _holdout(model: torch.nn.Module, preprocess: Callable, tokenizer: Callable, holdout_dir: Path,
             templates: Sequence[str], device: str, batch_size: int, probe_dir: Path | None,
             probe: dict) -> dict[str, float | int | None]:
    tars, _ = list_shards(holdout_dir)
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
        metrics.update(_prefixed("holdout", probe_metrics(fit_feats, fit_labels, image_feats, labels, probe)))
    return metrics


def _benchmark_probe(name: str, encoded: BenchmarkFeatures, probe: dict) -> dict[str, float | int | None]:
    """Linear probe on a benchmark CSV's own train/test rows (its ``split`` column)."""
    if not {"train", "test"} <= set(encoded.splits):
        raise PipelineError(f"benchmark {name!r}: linear_probe needs a 'split' column with train and test rows")
    train = [i for i, s in enumerate(encoded.splits) if s == "train"]
    test = [i for i, s in enumerate(encoded.splits) if s == "test"]
    return probe_metrics(encoded.features[train], [encoded.labels[i] for i in train],
                         encoded.features[test], [encoded.labels[i] for i in test], probe)
