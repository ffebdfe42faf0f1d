"""Zero-shot disease classification: prompt-ensembled text classifiers scored on image features.

Why the exclusions: Derm1M labels a pair "no definitive diagnosis" or with several comma-joined
diseases when the caption does not settle on one; neither is a class a single prompt can name, so
those samples are left out of the accuracy and reported as a count instead of silently lowering
(or inflating) it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from open_clip import build_zero_shot_classifier

from pipeline.errors import PipelineError
from pipeline.training.encode import Preprocess, encode_image_files

NO_DIAGNOSIS = "no definitive diagnosis"
MULTI_LABEL_SEP = ", "
DEFAULT_TEMPLATES = (
    "a clinical photo of {}.",
    "a dermoscopic image of {}.",
    "this is an image of {}, a skin condition.",
)


def single_class(label: object) -> str | None:
    """The class a disease label names, or None for missing, undiagnosed or multi-label ones."""
    if not isinstance(label, str):
        return None
    label = label.strip()
    if not label or label.lower() == NO_DIAGNOSIS or MULTI_LABEL_SEP in label:
        return None
    return label


def holdout_classes(metadata: Sequence[dict]) -> tuple[list[str], list[str | None]]:
    """Sorted distinct single-disease classes of the samples, and each sample's class (or None)."""
    labels = [single_class(m.get("disease_label")) for m in metadata]
    return sorted({label for label in labels if label is not None}), labels


def accuracy_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Top-1, top-3 and balanced (mean per-class recall over classes present) accuracy."""
    k = min(3, logits.shape[1])
    topk = logits.topk(k, dim=1).indices
    top1_hit = topk[:, 0] == targets
    top3_hit = (topk == targets[:, None]).any(dim=1)
    recalls = [float(top1_hit[targets == c].float().mean()) for c in targets.unique()]
    return {
        "top1": float(top1_hit.float().mean()),
        "top3": float(top3_hit.float().mean()),
        "balanced_acc": float(np.mean(recalls)),
    }


def zeroshot_metrics(
    model: torch.nn.Module,
    tokenizer: Callable,
    image_features: torch.Tensor,
    labels: Sequence[str | None],
    classnames: Sequence[str],
    templates: Sequence[str],
    device: str,
) -> dict[str, float | int | None]:
    """Zero-shot accuracy of ``image_features`` against ``classnames`` (templates use ``{}``).

    Samples whose label is not one of ``classnames`` (None included) are excluded and counted in
    ``n_excluded``; with no scorable sample the accuracies are None (JSON null, not NaN).
    """
    if len(labels) != len(image_features):
        raise ValueError(f"{len(labels)} labels for {len(image_features)} image features")
    class_index = {name: i for i, name in enumerate(classnames)}
    keep = [i for i, label in enumerate(labels) if label in class_index]
    result: dict[str, float | int | None] = {
        "n_samples": len(keep),
        "n_excluded": len(labels) - len(keep),
        "n_classes": len(class_index),
    }
    if not keep:
        return {**result, "top1": None, "top3": None, "balanced_acc": None}
    with torch.no_grad():
        classifier = build_zero_shot_classifier(
            model, tokenizer, list(classnames), list(templates), device=device
        )
    feats = torch.as_tensor(image_features)[keep].float().cpu()
    logits = feats @ classifier.float().cpu()
    targets = torch.tensor([class_index[labels[i]] for i in keep])
    return {**result, **accuracy_metrics(logits, targets)}


def _read_benchmark(csv_path: Path) -> pd.DataFrame:
    if not csv_path.is_file():
        raise PipelineError(f"{csv_path}: no such benchmark CSV")
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    missing = {"image_path", "label"} - set(frame.columns)
    if missing:
        raise PipelineError(f"{csv_path}: missing column(s) {sorted(missing)}; need image_path,label")
    return frame


def _resolve_labels(raw: list[str], classnames: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Class names and per-row labels; integer labels index ``classnames`` when none match."""
    if classnames is None:
        return sorted(set(raw) - {""}), raw
    names = list(classnames)
    if raw and not set(raw) & set(names) and all(r.isdigit() and int(r) < len(names) for r in raw):
        return names, [names[int(r)] for r in raw]
    return names, raw


@dataclass
class BenchmarkFeatures:
    """Image features of a benchmark CSV's readable rows, with their labels and optional split."""

    classnames: list[str]
    features: torch.Tensor
    labels: list[str]
    splits: list[str]
    counts: dict[str, int]
    n_excluded: int


def encode_benchmark(
    csv_path: Path,
    classnames: Sequence[str] | None,
    model: torch.nn.Module,
    preprocess: Preprocess,
    device: str,
    batch_size: int = 64,
) -> BenchmarkFeatures:
    """Encode the images of a benchmark CSV (``image_path,label`` and optionally ``split``).

    Image paths are relative to the CSV's folder (absolute paths are used as they are).
    ``classnames`` None means the CSV's distinct labels; integer labels are read as indices into
    ``classnames``. Rows whose file is missing (``n_missing``) or cannot be decoded
    (``n_unreadable``) are skipped and counted, never fatal; rows whose label is not a class are
    counted in ``n_excluded``.
    """
    csv_path = Path(csv_path)
    frame = _read_benchmark(csv_path)
    names, labels = _resolve_labels([s.strip() for s in frame["label"]], classnames)
    wanted = set(names)
    splits = frame["split"].str.strip().str.lower() if "split" in frame.columns else [""] * len(frame)
    rows = [
        (csv_path.parent / path, label, split)
        for path, label, split in zip(frame["image_path"], labels, splits, strict=True)
        if label in wanted
    ]
    features, kept, skipped = encode_image_files([path for path, _, _ in rows], model, preprocess, device, batch_size)
    counts = {"n_rows": len(frame), **skipped}
    kept_labels = [rows[i][1] for i in kept]
    kept_splits = [rows[i][2] for i in kept]
    return BenchmarkFeatures(names, features, kept_labels, kept_splits, counts, len(frame) - len(rows))


def zeroshot_from_csv(
    csv_path: Path,
    classnames: Sequence[str] | None,
    model: torch.nn.Module,
    preprocess: Preprocess,
    tokenizer: Callable,
    templates: Sequence[str],
    device: str,
    batch_size: int = 64,
    encoded: BenchmarkFeatures | None = None,
) -> dict[str, float | int | None]:
    """Zero-shot accuracy on a benchmark CSV with ``image_path,label`` (Derm1M's format).

    See :func:`encode_benchmark` for paths, labels and the skip counts; ``encoded`` reuses
    features already computed (the linear probe shares them).
    """
    bench = encoded or encode_benchmark(csv_path, classnames, model, preprocess, device, batch_size)
    result = zeroshot_metrics(model, tokenizer, bench.features, bench.labels, bench.classnames,
                              templates, device)  # fmt: skip
    result["n_excluded"] = bench.n_excluded  # rows whose label is not a class
    return {**result, **bench.counts}
