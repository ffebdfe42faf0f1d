"""Image<->caption retrieval recall@K from paired features, counting each image once.

Why per unique image: Derm1M pairs one image with several captions (and the holdout keeps all
of them). Scoring rows as if each caption had its own image would turn a caption of the same
image into a "wrong" answer; here any caption of the right image is a hit, and the image is
ranked once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

KS = (1, 5, 10)
_CHUNK = 1024


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    t = t.detach().float().cpu()
    return torch.nn.functional.normalize(t, dim=-1)


def retrieval_metrics(
    image_features: np.ndarray | torch.Tensor,
    text_features: np.ndarray | torch.Tensor,
    image_ids: Sequence[object] | None = None,
    ks: Sequence[int] = KS,
) -> dict[str, float]:
    """Recall@K for image->text (``i2t_R@K``) and text->image (``t2i_R@K``), cosine similarity.

    Row ``i`` of both arrays is one (image, caption) pair. ``image_ids`` groups rows that show
    the same image: images are deduplicated (first row's feature), a text's positive is its
    image, and an image's positives are all its captions. Ties count against the model (a
    negative scoring equal to the best positive outranks it), so a collapsed model scores 0,
    not 1. Computed in row chunks to bound memory on large holdouts.
    """
    img = _as_tensor(image_features)
    txt = _as_tensor(text_features)
    if img.shape[0] != txt.shape[0] or img.shape[0] == 0:
        raise ValueError(f"need equal, non-zero rows: {img.shape[0]} images, {txt.shape[0]} texts")
    ids = list(range(img.shape[0])) if image_ids is None else list(image_ids)
    if len(ids) != img.shape[0]:
        raise ValueError(f"{len(ids)} image ids for {img.shape[0]} rows")
    index: dict[object, int] = {}
    first_row: list[int] = []  # first row of each unique image
    for row, image_id in enumerate(ids):
        if image_id not in index:
            index[image_id] = len(index)
            first_row.append(row)
    text_to_image = torch.tensor([index[i] for i in ids])
    unique_img = img[torch.tensor(first_row)]

    i2t_rank = torch.empty(len(index), dtype=torch.long)
    for start in range(0, len(index), _CHUNK):
        rows = torch.arange(start, min(start + _CHUNK, len(index)))
        sims = unique_img[rows] @ txt.T  # (chunk, texts)
        positive = text_to_image[None, :] == rows[:, None]
        best = sims.masked_fill(~positive, float("-inf")).max(dim=1).values
        i2t_rank[rows] = ((sims >= best[:, None]) & ~positive).sum(dim=1)

    t2i_rank = torch.empty(txt.shape[0], dtype=torch.long)
    for start in range(0, txt.shape[0], _CHUNK):
        rows = torch.arange(start, min(start + _CHUNK, txt.shape[0]))
        sims = txt[rows] @ unique_img.T  # (chunk, unique images)
        pos_score = sims.gather(1, text_to_image[rows, None])
        t2i_rank[rows] = (sims >= pos_score).sum(dim=1) - 1

    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"i2t_R@{k}"] = float((i2t_rank < k).float().mean())
    for k in ks:
        metrics[f"t2i_R@{k}"] = float((t2i_rank < k).float().mean())
    return metrics
