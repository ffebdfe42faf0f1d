"""Stage ``report``: metrics for ``dvc metrics``, an HTML report, plot CSVs and a dataset card.

All numbers come from the final tables through DuckDB, over the same views ``derm1m query``
gives users, so anything on the page can be re-asked in SQL. Everything is written atomically
and without timestamps, so an unchanged corpus rebuilds byte-identical files.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from pipeline.errors import PipelineError
from pipeline.params import section
from pipeline.query import connect
from pipeline.report import data, figures, render
from pipeline.stages import StageResult, Timer, read_summaries
from pipeline.stages.order import DATA_STAGES
from pipeline.stages.split import SPLITS
from pipeline.tables import Publication, atomic_path, write_json
from pipeline.text.ontology import Ontology
from pipeline.training.compare import comparison_columns

# Figures the page embeds; also written beside it (DVC outs, README).
FIGURES = ("sources.png", "top_conditions.png", "ontology.png", "concepts.png", "caption_length.png",
           "dedup_funnel.png", "rejects.png", "splits.png", "demographics.png")


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0] or 0)


def collect_metrics(con: duckdb.DuckDBPyConnection) -> dict:
    """The numbers ``dvc metrics show`` prints (flat enough to diff between runs)."""
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
    m["dedup"]["largest_cluster"] = _scalar(con, "select coalesce(max(cluster_size), 0) from clusters")
    m["dedup"]["near_links_by_occlusion_check"] = _scalar(
        con, "select count(*) from duplicate_edges where verified_by = 'cells'")
    m["dedup"]["hash_method"] = ",".join(r[0] for r in con.execute(
        "select distinct hash_method from clusters order by 1").fetchall())
    m["decontaminate"] = decontamination_metrics(con)
    m["annotate"]["pairs_with_diagnosis"] = _scalar(con, "select count(*) from annotations where label_source <> 'none'")
    m["annotate"]["distinct_conditions"] = _scalar(con, "select count(distinct l) from (select unnest(disease_labels) as l from annotations)")
    m["truncate"]["truncated"] = _scalar(con, "select count(*) from captions where cut <> 'none'")
    m["ingest"]["languages"] = {lang: int(n) for lang, n in con.execute(
        "select language, count(*) from pairs group by 1 order by 1").fetchall()}
    m["enrich"] = {f"{v}_captions": _scalar(con, f"select count({v}_caption) from enriched_captions")
                   for v in ("ontology", "concept", "llm")}
    for split, n in con.execute("select split, count(*) from metadata group by split order by split").fetchall():
        m["split"][f"pairs_{split}"] = int(n)
    m["shard"]["samples"] = _scalar(con, "select count(*) from shard_index")
    m["shard"]["tars"] = _scalar(con, "select count(distinct split || shard) from shard_index")
    return m


def decontamination_metrics(con: duckdb.DuckDBPyConnection) -> dict:
    """What the benchmark check found and removed (zeros when no benchmark set is configured)."""
    views = {r[0] for r in con.execute("select view_name from duckdb_views()").fetchall()}  # every table has one
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


def make_figures(d: dict, context: int) -> dict[str, bytes]:
    """Every figure of the page as PNG bytes, keyed by file name (the keys are :data:`FIGURES`)."""
    rejects = [(f"{r['stage']} / {r['reason']}", r["rows"]) for r in d["rejects"]]
    made = {
        "sources.png": figures.sources(d["sources"]["by_type"], d["sources"]["by_source"]),
        "top_conditions.png": figures.bars(d["conditions"]["top"], f"Top {len(d['conditions']['top'])} conditions (pairs)"),
        "ontology.png": figures.ontology_sunburst(d["ontology"]["nodes"], d["ontology"]["root"]),
        "concepts.png": figures.concepts(d["concepts"]),
        "caption_length.png": figures.caption_lengths(d["captions"]["full"], d["captions"]["kept"], context,
                                                      d["captions"]["share_truncated"]),
        "dedup_funnel.png": figures.dedup_funnel(d["dedup"]["funnel"], d["dedup"]["by_match_kind"]),
        "rejects.png": figures.bars(rejects, "Rejected rows by stage / reason", color="#a33"),
        "splits.png": figures.splits(d["splits"]["sizes"]),
        "demographics.png": figures.demographics(d["demographics"]),
    }
    assert tuple(made) == FIGURES
    return made


def model_comparison(params: dict) -> dict | None:
    """The "Model" section's data from ``<evaluate.out>/eval.json``; before any evaluation, the
    models and benchmarks ``evaluate`` is configured to compare (``planned``).

    An eval.json of the old flat layout (one model, ``profile`` key) is read as that one model.
    """
    cfg = params.get("evaluate") or {}
    path = Path(cfg.get("out", "metrics")) / "eval.json"
    if not path.is_file():  # what the evaluate stage will compare, so the section says what to expect
        profile = (params.get("train") or {}).get("profile", "")
        planned = [("model", s, "") for s in cfg.get("models") or []] or [("model", profile, "train.profile")]
        planned += [("benchmark", b.get("name", ""), f"{b.get('kind', 'zeroshot')}: {b.get('csv', '')}")
                    for b in cfg.get("benchmarks") or [] if isinstance(b, dict)]
        return {"source": str(path), "columns": [], "rows": [], "png": b"", "planned": planned}
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: not readable JSON ({exc}); rerun derm1m evaluate") from None
    if isinstance(results, dict) and "profile" in results and not isinstance(results.get("profile"), dict):
        results = {str(results["profile"]): results}
    results = {k: v for k, v in results.items() if isinstance(v, dict)}
    specs = cfg.get("models") or []
    order = [s.split("=", 1)[0] if "=" in s and "/" not in s.split("=", 1)[0] else s for s in specs]
    labels = sorted(results, key=lambda k: (order.index(k) if k in order else len(order), k))
    results = {k: results[k] for k in labels}
    columns = comparison_columns(cfg.get("benchmarks") or [], results)
    rows = [(label, [m.get(key) if isinstance(m.get(key), float | int) else None for _, key in columns])
            for label, m in results.items()]
    png = figures.models(rows, [t for t, _ in columns]) if rows and columns else b""
    return {"source": str(path), "columns": columns, "rows": rows, "png": png, "planned": []}


# CSVs under report/ that dvc.yaml lists as plots (numeric series and bar charts).
PLOT_FILES = ("caption_tokens.csv", "plots/caption_tokens_kept.csv", "plots/age_years.csv", "plots/skin_type.csv",
              "plots/source_types.csv", "plots/top_conditions.csv", "plots/dedup_funnel.csv", "plots/rejects.csv",
              "plots/splits.csv")


def plot_tables(d: dict) -> dict[str, tuple[str, str, list[tuple]]]:
    """The series behind the figures as small CSVs for ``dvc plots``: file -> (x, y, rows)."""
    made = {
        "caption_tokens.csv": ("tokens", "pairs", d["captions"]["full"]),
        "plots/caption_tokens_kept.csv": ("tokens", "pairs", d["captions"]["kept"]),
        "plots/age_years.csv": ("age_years", "pairs", d["demographics"]["age_years"]),
        "plots/skin_type.csv": ("skin_type", "pairs", d["demographics"]["skin_type"]),
        "plots/source_types.csv": ("source_type", "pairs", d["sources"]["by_type"]),
        "plots/top_conditions.csv": ("condition", "pairs", d["conditions"]["top"]),
        "plots/dedup_funnel.csv": ("step", "count", d["dedup"]["funnel"]),
        "plots/rejects.csv": ("reason", "rows", [(f"{r['stage']}/{r['reason']}", r["rows"]) for r in d["rejects"]]),
        "plots/splits.csv": ("split", "pairs", [r[:2] for r in d["splits"]["sizes"]]),
    }
    assert tuple(made) == PLOT_FILES
    return made


def _csv_cell(value: object) -> str:
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in ',"\n') else text


#: Wall time and peak memory of each stage's last run, from the stage summaries (not a DVC out).
STAGE_TIMES = "stage_times.csv"
_TIME_COLUMNS = ("stage", "seconds", "rows_in", "rows_out", "rejected", "rows_per_second", "max_rss_mb",
                 "max_worker_rss_mb")


def stage_times(summaries: list[dict]) -> str:
    """``stage_times.csv`` from the recorded summaries, in pipeline order ("" when there is none)."""
    if not summaries:
        return ""
    order = {name: i for i, (name, _, _) in enumerate(DATA_STAGES)}
    lines = [",".join(_TIME_COLUMNS)]
    for doc in sorted(summaries, key=lambda s: (order.get(s["stage"], len(order)), s["stage"])):
        seconds = float(doc.get("seconds") or 0)
        rows = max(int(doc.get("rows_in") or 0), int(doc.get("rows_out") or 0))
        values = [doc["stage"], f"{seconds:.2f}", doc.get("rows_in", 0), doc.get("rows_out", 0), doc.get("rejected", 0),
                  f"{rows / seconds:.0f}" if seconds > 0 else "", doc.get("max_rss_mb", ""),
                  doc.get("max_worker_rss_mb", "")]
        lines.append(",".join(_csv_cell(v) for v in values))
    return "\n".join(lines) + "\n"


def write_text(path: Path, text: str | bytes) -> None:
    """Atomic write of text or bytes (a killed stage never leaves half a page or image).

    Its mode follows the umask (0644 usually), like every published output.
    """
    with atomic_path(path) as tmp:
        if isinstance(text, bytes):
            tmp.write_bytes(text)
        else:
            tmp.write_text(text, encoding="utf-8")


def run(params: dict) -> StageResult:
    """Build metrics.json, the figures, the plot CSVs, index.html and DATASET_CARD.md from the tables.

    Params are checked before anything is read, so a typo is a one-line error, not a half report.
    """
    cfg = section(params, "report", {"out": str, "top_n": int, "examples": int, "title": str})
    if cfg["top_n"] < 1 or cfg["examples"] < 0:
        raise PipelineError("params.yaml: report.top_n must be >= 1 and report.examples >= 0")
    out = Path(cfg["out"])
    ann = section(params, "annotate", {"ontology": str, "concepts": str})
    context = int(section(params, "truncate", {"context_length": int})["context_length"])
    with Timer(StageResult("report")) as result:
        onto = Ontology.load(ann["ontology"])
        con = connect(params)
        shards = Path(section(params, "shard", {"out": str})["out"])
        try:
            metrics = collect_metrics(con)
            d = data.collect(con, onto, ann["concepts"], cfg["top_n"], cfg["examples"],
                             {split: shards / split for split in SPLITS})
        finally:
            con.close()
        sc = d["scale"]
        metrics["shard"].update({f"bytes_{split}": tar_bytes for split, _, _, _, tar_bytes, _, _ in sc["shards"]})
        metrics["shard"]["repeated_jpeg_bytes"] = sum(r[6] for r in sc["shards"])
        metrics["shard"]["pairs_per_image"] = round(sc["pairs_per_image"], 4)
        metrics["dedup"]["largest_cluster_share"] = round(sc["largest_cluster_share"], 6)
        result.rows_in = d["overview"]["pairs"]
        pngs = make_figures(d, context)
        d["model"] = model_comparison(params)
        # Every file to a temporary first, then all renamed together: a kill leaves the previous
        # report whole, never a new page beside old figures.
        with Publication(out / ".report.commit.json") as pub:
            write_json(metrics, pub.file(out / "metrics.json"))
            for name, (x, y, rows) in plot_tables(d).items():
                write_text(pub.file(out / name), f"{x},{y}\n" + "".join(f"{_csv_cell(a)},{b}\n" for a, b in rows))
            for name, png in pngs.items():
                write_text(pub.file(out / name), png)
            write_text(pub.file(out / "index.html"), render.build_html(d, pngs, cfg["title"], context))
            write_text(pub.file(out / "DATASET_CARD.md"), render.build_card(d, cfg["title"], context))
        times = stage_times(read_summaries(params))
        if times:   # not a DVC out (times differ on every run), so outside the publication
            write_text(out / STAGE_TIMES, times)
        result.rows_out = len(pngs)
        result.extra = {"figures": len(pngs), "html": str(out / "index.html")}
    return result
