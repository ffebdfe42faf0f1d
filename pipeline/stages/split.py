"""Stage ``split``: train / validation / holdout per duplicate cluster, never splitting one.

Clusters are first joined into split groups when their pairs share a source group key (the
HAM10000 lesion id, a patient id), so neither a duplicate image nor a re-photographed lesion
crosses splits. A group's split is drawn from a salted hash of its id: deterministic, stable
when unrelated rows change, and with no RNG state.

Decontamination: a group drawn for train that holds any image within ``decontaminate.radius``
of a benchmark image (dedup's ``benchmark_matches``) gets the split ``decontaminated`` instead
and is written to the ``decontaminated`` table, image by image, with the benchmark image it
matched. The whole group goes, not just the matching file: its duplicates and the other photos
of the same lesion would leak the benchmark image just the same. Groups drawn for validation or
holdout keep their split (our own evaluation splits are not the benchmark).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import ids
from pipeline.errors import ConfigError, PipelineError
from pipeline.images.clusters import components
from pipeline.images.hashing import single_method
from pipeline.params import section
from pipeline.stages import StageResult, Timer
from pipeline.tables import atomic_dir, load_schema, read_table, write_table

SPLITS = ("train", "validation", "holdout")
DECONTAMINATED = "decontaminated"   # the split of train groups removed for matching a benchmark


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


def decontaminate(frame: pd.DataFrame, clusters: pd.DataFrame,
                  matches: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Move train groups that touch a benchmark image to ``decontaminated``; list their images.

    ``frame`` has cluster_id, split_group, split. Returns the updated frame and the
    decontaminated rows (one per image of a removed group, with its closest benchmark match:
    the image's own match first, else its cluster's, else its group's).
    """
    columns = load_schema("decontaminated").names
    if not len(matches):
        return frame, pd.DataFrame(columns=columns)
    best = (matches.sort_values(["image_id", "distance", "benchmark", "benchmark_path"], kind="mergesort")
            .drop_duplicates("image_id"))
    members = clusters[["image_id", "cluster_id"]].merge(frame[["cluster_id", "split_group", "split"]], on="cluster_id")
    hit = best.merge(members, on="image_id")
    removed_groups = set(hit.loc[hit["split"] == "train", "split_group"])
    if not removed_groups:
        return frame, pd.DataFrame(columns=columns)
    frame = frame.assign(split=np.where(frame["split_group"].isin(removed_groups), DECONTAMINATED, frame["split"]))
    hit = hit[hit["split_group"].isin(removed_groups)].rename(columns={"image_id": "matched_image_id"})
    order = ["distance", "benchmark", "benchmark_path", "matched_image_id"]
    by_cluster = hit.sort_values(["cluster_id", *order], kind="mergesort").drop_duplicates("cluster_id")
    by_group = hit.sort_values(["split_group", *order], kind="mergesort").drop_duplicates("split_group")
    out = members[members["split_group"].isin(removed_groups)].drop(columns="split")
    match_cols = ["matched_image_id", "benchmark", "benchmark_path", "distance", "hash_method"]
    own = out.merge(hit[["matched_image_id", *match_cols[1:]]], left_on="image_id", right_on="matched_image_id")
    rest = out[~out["image_id"].isin(own["image_id"])]
    dup = rest.merge(by_cluster[["cluster_id", *match_cols]], on="cluster_id")
    grp = rest[~rest["image_id"].isin(dup["image_id"])].merge(by_group[["split_group", *match_cols]], on="split_group")
    rows = pd.concat([own.assign(via="match"), dup.assign(via="duplicate"), grp.assign(via="group")], ignore_index=True)
    return frame, rows[columns].sort_values("image_id", ignore_index=True)


def run(params: dict) -> StageResult:
    cfg = section(params, "split", {"out": str, "salt": str, "ratios": dict})
    ratios = check_ratios(cfg["ratios"])
    ingest_out = Path(section(params, "ingest", {"out": str})["out"])
    dedup_out = Path(section(params, "dedup", {"out": str})["out"])
    out = Path(cfg["out"])
    with Timer(StageResult("split")) as result:
        clusters = read_table("clusters", dedup_out / "clusters.parquet")
        pairs = read_table("pairs", ingest_out / "pairs.parquet")
        matches = read_table("benchmark_matches", dedup_out / "benchmark_matches.parquet")
        try:
            methods = {single_method(clusters["hash_method"], "clusters"),
                       single_method(matches["hash_method"], "benchmark_matches")} - {None}
        except ValueError as exc:
            raise PipelineError(str(exc)) from None
        if len(methods) > 1:
            raise PipelineError(f"clusters and benchmark_matches come from different hash methods {sorted(methods)}; "
                                "re-run dedup")
        frame = split_groups(clusters, pairs)
        frame["split"] = assign_splits(frame["split_group"], ratios, cfg["salt"])
        frame, removed = decontaminate(frame, clusters, matches)
        with atomic_dir(out) as tmp:   # both tables appear together or not at all
            write_table(frame, "splits", tmp / "splits.parquet")
            write_table(removed, "decontaminated", tmp / "decontaminated.parquet")
        result.rows_in = result.rows_out = len(frame)
        result.extra = {s: int((frame["split"] == s).sum()) for s in (*SPLITS, DECONTAMINATED)}
        result.extra["decontaminated images"] = len(removed)
    return result
