"""Stage ``report``: corpus metrics for ``dvc metrics`` and plots people can look at.

All numbers come from the final tables through DuckDB, the same way users query them.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.params import section  # noqa: E402
from pipeline.query import register_views  # noqa: E402
from pipeline.stages import StageResult, Timer  # noqa: E402
from pipeline.tables import atomic_path, write_json  # noqa: E402


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0] or 0)


def collect_metrics(con: duckdb.DuckDBPyConnection) -> dict:
    m: dict = {"ingest": {}, "dedup": {}, "split": {}, "shard": {}, "annotate": {}, "truncate": {}}
    m["ingest"]["pairs"] = _scalar(con, "select count(*) from pairs")
    m["ingest"]["images"] = _scalar(con, "select count(*) from images")
    m["ingest"]["rejected"] = _scalar(con, "select count(*) from rejects where stage = 'ingest'")
    m["ingest"]["records"] = m["ingest"]["pairs"] + m["ingest"]["rejected"]
    m["rejects_by_reason"] = {f"{s}/{r}": n for s, r, n in con.execute(
        "select stage, reason, count(*) from rejects group by all order by all").fetchall()}
    m["dedup"]["clusters"] = _scalar(con, "select count(distinct cluster_id) from clusters")
    m["dedup"]["clusters_with_duplicates"] = _scalar(con, "select count(distinct cluster_id) from clusters where cluster_size > 1")
    m["dedup"]["duplicate_images_exact"] = _scalar(con, "select count(*) from clusters where match_kind = 'exact'")
    m["dedup"]["duplicate_images_near"] = _scalar(con, "select count(*) from clusters where match_kind = 'near'")
    m["dedup"]["hash_method"] = ",".join(r[0] for r in con.execute(
        "select distinct hash_method from clusters order by 1").fetchall())
    m["decontaminate"] = decontamination_metrics(con)
    m["annotate"]["pairs_with_diagnosis"] = _scalar(con, "select count(*) from annotations where label_source <> 'none'")
    m["annotate"]["distinct_conditions"] = _scalar(con, "select count(distinct l) from (select unnest(disease_labels) as l from annotations)")
    m["truncate"]["truncated"] = _scalar(con, "select count(*) from captions where cut <> 'none'")
    for split, n in con.execute("select split, count(*) from metadata group by split order by split").fetchall():
        m["split"][f"pairs_{split}"] = int(n)
    m["shard"]["samples"] = _scalar(con, "select count(*) from shard_index")
    m["shard"]["tars"] = _scalar(con, "select count(distinct split || shard) from shard_index")
    return m


def decontamination_metrics(con: duckdb.DuckDBPyConnection) -> dict:
    """What the benchmark check found and removed (zeros when no benchmark set is configured)."""
    views = {r[0] for r in con.execute("select view_name from duckdb_views()").fetchall()}
    m: dict = {"benchmark_matches": 0, "images_matching": 0, "images_removed": 0, "pairs_removed": 0,
               "clusters_removed": 0, "removed_by_benchmark": {}}
    if "benchmark_matches" in views:
        m["benchmark_matches"] = _scalar(con, "select count(*) from benchmark_matches")
        m["images_matching"] = _scalar(con, "select count(distinct image_id) from benchmark_matches")
    if "decontaminated" in views:
        m["images_removed"] = _scalar(con, "select count(*) from decontaminated")
        m["clusters_removed"] = _scalar(con, "select count(distinct cluster_id) from decontaminated")
        m["pairs_removed"] = _scalar(con, "select count(*) from pairs p join decontaminated d using (image_id)")
        m["removed_by_benchmark"] = {b: int(n) for b, n in con.execute(
            "select benchmark, count(*) from decontaminated group by 1 order by 1").fetchall()}
    return m


def register_dedup_views(con: duckdb.DuckDBPyConnection, params: dict) -> None:
    """Views of the decontamination tables (the shared query views predate them)."""
    files = {"benchmark_matches": Path(section(params, "dedup", {"out": str})["out"]) / "benchmark_matches.parquet",
             "decontaminated": Path(section(params, "split", {"out": str})["out"]) / "decontaminated.parquet"}
    for name, path in files.items():
        if path.exists():
            literal = path.as_posix().replace("'", "''")
            con.execute(f"create or replace view {name} as select * from read_parquet('{literal}')")


def _bar(ax, rows: list[tuple], title: str) -> None:
    labels, values = [str(r[0]) for r in rows], [r[1] for r in rows]
    ax.barh(labels[::-1], values[::-1], color="#b5651d")
    ax.set_title(title)


def plot(con: duckdb.DuckDBPyConnection, out: Path) -> list[Path]:
    made = []
    charts = {
        "sources.png": ("Pairs per source type", "select source_type, count(*) from pairs group by 1 order by 2 desc"),
        "top_conditions.png": ("Top 15 conditions", "select l, count(*) from (select unnest(disease_labels) l from annotations) "
                               "group by 1 order by 2 desc, 1 limit 15"),
        "rejects.png": ("Rejects by stage/reason", "select stage || ' / ' || reason, count(*) from rejects group by 1 order by 2 desc"),
        "dedup_funnel.png": ("Dedup funnel", "select * from (values ('pairs', (select count(*) from pairs)), "
                             "('images', (select count(*) from images)), ('unique contents', (select count(distinct sha256) from images)), "
                             "('clusters', (select count(distinct cluster_id) from clusters))) t"),
    }
    for name, (title, sql) in charts.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        _bar(ax, con.execute(sql).fetchall(), title)
        fig.tight_layout()
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
        plt.close(fig)
        made.append(out / name)
    lengths = con.execute("select n_tokens, n_tokens_kept from captions").fetchall()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist([r[0] for r in lengths], bins=30, alpha=0.6, label="caption")
    ax.hist([r[1] for r in lengths], bins=30, alpha=0.6, label="truncated")
    ax.set_xlabel("tokens")
    ax.set_title("Caption length")
    ax.legend()
    fig.tight_layout()
    with atomic_path(out / "caption_length.png") as tmp:
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    made.append(out / "caption_length.png")
    return made


def run(params: dict) -> StageResult:
    out = Path(section(params, "report", {"out": str})["out"])
    with Timer(StageResult("report")) as result:
        con = duckdb.connect()
        register_views(con, params)
        register_dedup_views(con, params)
        metrics = collect_metrics(con)
        write_json(metrics, out / "metrics.json")
        hist = con.execute("select n_tokens as tokens, count(*) as pairs from captions group by 1 order by 1").fetchall()
        with atomic_path(out / "caption_tokens.csv") as tmp:
            tmp.write_text("tokens,pairs\n" + "".join(f"{t},{n}\n" for t, n in hist), encoding="utf-8")
        plot(con, out)
        result.rows_out = len(metrics)
    return result
