"""Derm1M's other two benchmark kinds: concept annotation (AUROC) and retrieval on external CSVs.

Why here and not in zeroshot: both read their own CSV layouts and score features differently.

- **Concept annotation** (Derm1M on SkinCon and Derm7pt): for each concept column of a CSV of
  ``image_path`` + 0/1 concept columns, the AUROC of the image-text similarity between every
  image and the concept's prompt (its ``ontology/concepts.yaml`` name and synonyms in each
  template, embeddings averaged) against the labels; the mean over concepts that have both
  positive and negative images is the headline (``concept_auroc_mean``).
- **Retrieval** on an ``image_path,caption`` CSV (SkinCAP's layout after
  :mod:`benchmark_csv`): recall@1/5/10 both ways, one image counted once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from pipeline.errors import PipelineError
from pipeline.text.vocab import load_concepts
from pipeline.training.encode import Preprocess, encode_image_files, encode_texts
from pipeline.training.retrieval import retrieval_metrics

DEFAULT_CONCEPT_TEMPLATES = ("a skin lesion showing {}.", "a clinical photo of skin with {}.")
CONCEPTS_YAML = Path(__file__).resolve().parents[2] / "ontology" / "concepts.yaml"
# Columns of a concept CSV that are not concepts.
NON_CONCEPT = {"image_path", "label", "split", "caption"}


def _readable(phrase: str) -> str:
    """``brown(hyperpigmentation)`` -> ``brown hyperpigmentation``; ``purpura/petechiae`` -> ``purpura or
    petechiae``: the concept names' punctuation is a naming convention, not prose."""
    phrase = re.sub(r"\(([^)]*)\)", r" \1", phrase).replace("/", " or ")
    return re.sub(r"\s+", " ", phrase).strip()


def concept_phrases(columns: Sequence[str], vocab: Path = CONCEPTS_YAML) -> dict[str, list[str]]:
    """Each concept column's phrases: the concepts.yaml entry it names (case-insensitive; its name
    and synonyms), else the column name itself."""
    entries = {e.name.lower(): e for e in load_concepts(vocab)}
    out: dict[str, list[str]] = {}
    for col in columns:
        entry = entries.get(col.strip().lower()) or entries.get(col.strip().lower().replace("_", " "))
        phrases = entry.phrases if entry else (col.strip().lower().replace("_", " "),)
        out[col] = list(dict.fromkeys(_readable(p) for p in phrases))
    return out


def read_concept_csv(csv_path: Path) -> tuple[list[Path], dict[str, list[int]]]:
    """Image paths (relative to the CSV folder) and 0/1 labels per concept column."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise PipelineError(f"{csv_path}: no such concept CSV")
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    if "image_path" not in frame.columns:
        raise PipelineError(f"{csv_path}: needs an image_path column and 0/1 concept columns")
    concepts = [c for c in frame.columns if c not in NON_CONCEPT]
    if not concepts:
        raise PipelineError(f"{csv_path}: no concept columns (0/1 per image) besides {sorted(NON_CONCEPT)}")
    labels: dict[str, list[int]] = {}
    for col in concepts:
        values = frame[col].str.strip()
        bad = sorted(set(values) - {"0", "1"})
        if bad:
            raise PipelineError(f"{csv_path}: concept column {col!r} holds {bad[:3]}; concept labels are 0 or 1")
        labels[col] = [int(v) for v in values]
    return [csv_path.parent / p for p in frame["image_path"]], labels


@torch.no_grad()
def concept_embeddings(model: torch.nn.Module, tokenizer: Callable, phrases: dict[str, list[str]],
                       templates: Sequence[str], device: str, batch_size: int = 64) -> torch.Tensor:
    """One L2-normalised text embedding per concept: the mean over its phrases x templates."""
    rows = []
    for texts in phrases.values():
        prompts = [t.format(p) for p in texts for t in templates]
        rows.append(torch.nn.functional.normalize(encode_texts(model, tokenizer, prompts, device, batch_size)
                                                  .mean(dim=0), dim=0))
    return torch.stack(rows)


def concept_auroc(similarity: torch.Tensor, labels: dict[str, Sequence[int]]) -> dict[str, float | int | None]:
    """Per-concept AUROC of ``similarity`` (images x concepts, columns in ``labels`` order).

    A concept whose images are all positive or all negative has no AUROC (None) and is left out
    of the mean; ``concept_n_scored`` says how many counted.
    """
    out: dict[str, float | int | None] = {}
    scores = []
    for j, (name, y) in enumerate(labels.items()):
        y = list(y)
        if len(set(y)) < 2:
            out[f"auroc/{name}"] = None
            continue
        auc = float(roc_auc_score(y, similarity[:, j].numpy()))
        out[f"auroc/{name}"] = auc
        scores.append(auc)
    return {"concept_auroc_mean": sum(scores) / len(scores) if scores else None,
            "concept_n_scored": len(scores), "concept_n_concepts": len(labels), **out}


def concepts_from_csv(csv_path: Path, model: torch.nn.Module, preprocess: Preprocess, tokenizer: Callable,
                      templates: Sequence[str] = DEFAULT_CONCEPT_TEMPLATES, device: str = "cpu",
                      batch_size: int = 64, vocab: Path = CONCEPTS_YAML) -> dict[str, float | int | None]:
    """Concept-annotation AUROCs of a model on a concept CSV; unreadable images skipped and counted."""
    paths, labels = read_concept_csv(csv_path)
    feats, kept, counts = encode_image_files(paths, model, preprocess, device, batch_size)
    kept_labels = {name: [y[i] for i in kept] for name, y in labels.items()}
    result: dict[str, float | int | None] = {"n_rows": len(paths), **counts, "n_images": len(kept)}
    if not kept:
        return {**result, **concept_auroc(torch.empty(0, len(labels)), kept_labels)}
    text = concept_embeddings(model, tokenizer, concept_phrases(list(labels), vocab), templates, device, batch_size)
    return {**result, **concept_auroc(feats @ text.T, kept_labels)}


def retrieval_from_csv(csv_path: Path, model: torch.nn.Module, preprocess: Preprocess, tokenizer: Callable,
                       device: str = "cpu", batch_size: int = 64) -> dict[str, float | int | None]:
    """Image<->caption recall@1/5/10 on an ``image_path,caption`` CSV (rows of one image share it)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise PipelineError(f"{csv_path}: no such retrieval CSV")
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    if not {"image_path", "caption"} <= set(frame.columns):
        raise PipelineError(f"{csv_path}: needs image_path and caption columns (see benchmark_csv skincap)")
    frame = frame[frame["caption"].str.strip() != ""]
    paths = [csv_path.parent / p for p in frame["image_path"]]
    feats, kept, counts = encode_image_files(paths, model, preprocess, device, batch_size)
    result: dict[str, float | int | None] = {"n_rows": len(paths), **counts, "n_samples": len(kept)}
    if len(kept) < 2:
        return {**result, **{f"{d}_R@{k}": None for d in ("i2t", "t2i") for k in (1, 5, 10)}}
    captions = [frame["caption"].iloc[i] for i in kept]
    text = encode_texts(model, tokenizer, captions, device, batch_size)
    ids = [str(paths[i].resolve()) for i in kept]
    return {**result, "n_images": len(set(ids)), **retrieval_metrics(feats, text, ids)}
