"""Stage ``split``: train / validation / holdout per duplicate cluster, never splitting one.

Clusters are first joined into split groups when their pairs share a source group key (the
HAM10000 lesion id, a patient id), so neither a duplicate image nor a re-photographed lesion
crosses splits. A group's split is drawn from a salted hash of its id: deterministic, stable
when unrelated rows change, and with no RNG state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import ids
from pipeline.errors import ConfigError
from pipeline.images.clusters import components
from pipeline.params import section
from pipeline.stages import StageResult, Timer
from pipeline.tables import read_table, write_table

SPLITS = ("train", "validation", "holdout")


def check_ratios(ratios: dict) -> list[tuple[str, float]]:
    if set(ratios) != set(SPLITS):
        raise ConfigError(f"params.yaml: split.ratios must name exactly {list(SPLITS)}, got {sorted(ratios)}")
    values = [float(ratios[s]) for s in SPLITS]
    if any(v < 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"params.yaml: split.ratios must be non-negative and sum to 1, got {ratios}")
    return list(zip(SPLITS, values, strict=True))


def split_groups(clusters: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """cluster_id -> split_group: connected components of clusters linked by shared group keys."""
    cluster_ids = np.sort(clusters["cluster_id"].unique())
    index = {c: i for i, c in enumerate(cluster_ids)}
    keyed = pairs.dropna(subset=["group_key"]).merge(clusters[["image_id", "cluster_id"]], on="image_id")
    keyed = keyed.assign(_key=keyed["source"] + "\x00" + keyed["group_key"])
    firsts = keyed.groupby("_key")["cluster_id"].transform("min")
    a = keyed["cluster_id"].map(index).to_numpy()
    b = firsts.map(index).to_numpy()
    labels = components(len(cluster_ids), a, b)
    frame = pd.DataFrame({"cluster_id": cluster_ids, "_label": labels})
    frame["split_group"] = frame.groupby("_label")["cluster_id"].transform("min")
    return frame[["cluster_id", "split_group"]]


def assign_splits(groups: pd.Series, ratios: list[tuple[str, float]], salt: str) -> list[str]:
    bounds = np.cumsum([r for _, r in ratios])
    names = [s for s, _ in ratios]
    out = []
    for g in groups:
        u = ids.unit_hash(g, salt)
        out.append(names[min(int(np.searchsorted(bounds, u, side="right")), len(names) - 1)])
    return out


def run(params: dict) -> StageResult:
    cfg = section(params, "split", {"out": str, "salt": str, "ratios": dict})
    ratios = check_ratios(cfg["ratios"])
    ingest_out = Path(section(params, "ingest", {"out": str})["out"])
    dedup_out = Path(section(params, "dedup", {"out": str})["out"])
    with Timer(StageResult("split")) as result:
        clusters = read_table("clusters", dedup_out / "clusters.parquet")
        pairs = read_table("pairs", ingest_out / "pairs.parquet")
        frame = split_groups(clusters, pairs)
        frame["split"] = assign_splits(frame["split_group"], ratios, cfg["salt"])
        write_table(frame, "splits", Path(cfg["out"]) / "splits.parquet")
        result.rows_in = result.rows_out = len(frame)
        result.extra = {s: int((frame["split"] == s).sum()) for s in SPLITS}
    return result
