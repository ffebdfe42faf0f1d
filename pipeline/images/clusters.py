"""Duplicate clusters: connected components of exact and near-duplicate links, one canonical each.

The canonical image of a cluster is the one a user would keep: the highest resolution, then the
earliest source in params.yaml, then the smallest image id (a deterministic tie-break).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Component label of each of ``n`` nodes given undirected edges (i, j)."""
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def choose_canonical(frame: pd.DataFrame, labels: np.ndarray) -> np.ndarray:
    """Row index of each row's canonical image (frame needs width, height, source_rank, image_id)."""
    ranked = frame.assign(_label=labels, _pixels=-(frame["width"].astype(np.int64) * frame["height"].astype(np.int64)),
                          _row=np.arange(len(frame)))
    ranked = ranked.sort_values(["_label", "_pixels", "source_rank", "image_id"], kind="mergesort")
    first = ranked.groupby("_label", sort=False)["_row"].first()
    return first.loc[labels].to_numpy()
