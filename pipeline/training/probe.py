"""Linear probe: logistic regression on frozen image features, with a label-fraction knob.

Why a label fraction: the DermLIP/PanDerm papers report linear probing with 1%, 10% and 100% of
the training labels to show how far a frozen encoder gets with few labels; the subsample is
per class (at least one sample each) and seeded, so the same fraction gives the same fit.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

from pipeline.errors import PipelineError


def subsample_per_class(labels: Sequence[str], fraction: float, seed: int = 0) -> list[int]:
    """Indices of ``ceil(fraction * n_c)`` samples of each class ``c`` (at least one), sorted."""
    if not 0 < fraction <= 1:
        raise PipelineError(f"linear probe: label_fraction must be in (0, 1], got {fraction}")
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    rng = random.Random(seed)
    keep: list[int] = []
    for label in sorted(by_class):
        idx = by_class[label]
        keep += rng.sample(idx, max(1, math.ceil(fraction * len(idx))))
    return sorted(keep)


def linear_probe(
    train_features: torch.Tensor | np.ndarray,
    train_labels: Sequence[str | None],
    test_features: torch.Tensor | np.ndarray,
    test_labels: Sequence[str | None],
    label_fraction: float = 1.0,
    C: float = 1.0,  # noqa: N803 - scikit-learn's name
    seed: int = 0,
) -> dict[str, float | int | None]:
    """Fit on the labelled fraction of the train rows, score top-1 and balanced accuracy on test.

    Rows labelled None are ignored; test rows whose class never occurs in the fit are excluded
    (``probe_n_excluded``) since no linear head can predict them. Fewer than two fit classes or
    no scorable test row gives None accuracies (JSON null), not an exception.
    """
    train_x = np.asarray(torch.as_tensor(train_features).float().cpu())
    test_x = np.asarray(torch.as_tensor(test_features).float().cpu())
    labelled = [i for i, label in enumerate(train_labels) if label is not None]
    chosen = [labelled[i] for i in subsample_per_class([train_labels[i] for i in labelled], label_fraction, seed)] \
        if labelled else []
    classes = sorted({train_labels[i] for i in chosen})
    scorable = [i for i, label in enumerate(test_labels) if label in set(classes)]
    result: dict[str, float | int | None] = {
        "probe_n_train": len(chosen), "probe_n_test": len(scorable),
        "probe_n_excluded": sum(label is not None for label in test_labels) - len(scorable),
        "probe_n_classes": len(classes), "probe_label_fraction": label_fraction,
    }
    if len(classes) < 2 or not scorable:
        return {**result, "probe_top1": None, "probe_balanced_acc": None}
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    clf.fit(train_x[chosen], [train_labels[i] for i in chosen])
    truth = [test_labels[i] for i in scorable]
    pred = clf.predict(test_x[scorable])
    with warnings.catch_warnings():  # predicting a class the test rows lack is expected, not news
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(balanced_accuracy_score(truth, pred))
    return {**result, "probe_top1": float(np.mean(pred == np.asarray(truth))), "probe_balanced_acc": balanced}
