"""Every number the report shows, asked in SQL over the query views.

The final corpus is the ``metadata`` table (the pairs in the shards); the funnel and rejects
come from the stage tables. Results are plain lists and dicts so the HTML page, the dataset
card and the DVC plot CSVs are all rendered from one object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.text.ontology import Ontology
from pipeline.text.vocab import load_concepts

AGE_GROUPS = ("infant", "child", "adolescent", "adult", "elderly")
NOT_STATED = "not stated"


@dataclass
class OntologyNode:
    """One ontology node with the corpus pairs labelled with it (``direct``) or anything below it."""

    id: str
    name: str
    level: int
    parent: str | None
    direct: int = 0
    total: int = 0
    children: list[str] = field(default_factory=list)


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    """All rows of a query (bound parameters keep user-controlled values such as top_n out of the SQL)."""
    return con.execute(sql, params or []).fetchall()


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    """A count, with NULL (an empty table's sum or max) read as 0."""
    return int(con.execute(sql).fetchall()[0][0] or 0)


def overview(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Headline counts: what went in, what came out."""
    return {
        "records": scalar(con, "select count(*) from pairs") + scalar(con, "select count(*) from rejects where stage = 'ingest'"),
        "pairs_ingested": scalar(con, "select count(*) from pairs"),
        "images_ingested": scalar(con, "select count(*) from images"),
        "pairs": scalar(con, "select count(*) from metadata"),
        "images": scalar(con, "select count(distinct image_id) from metadata"),
        "canonical_images": scalar(con, "select count(distinct canonical_image_id) from metadata"),
        "clusters": scalar(con, "select count(distinct cluster_id) from metadata"),
        "conditions": scalar(con, "select count(distinct l) from (select unnest(disease_labels) l from metadata)"),
        "sources": scalar(con, "select count(distinct source) from metadata"),
        "rejected": scalar(con, "select count(*) from rejects"),
        "shard_samples": scalar(con, "select count(distinct key) from shard_index"),
    }


def sources(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """Pairs per source (with type and licence) and per source type."""
    return {
        "by_source": rows(con, "select source, source_type, licence, count(*) pairs, count(distinct image_id) images "
                               "from metadata group by all order by pairs desc, source, source_type, licence"),
        "by_type": rows(con, "select source_type, count(*) pairs from metadata group by 1 order by 2 desc, 1"),
    }


def conditions(con: duckdb.DuckDBPyConnection, top_n: int) -> dict[str, list[tuple]]:
    """Top-N disease labels and where the labels came from (source label, caption, context, ...)."""
    return {
        "top": rows(con, "select l, count(*) n from (select unnest(disease_labels) l from metadata) "
                         "group by 1 order by 2 desc, 1 limit ?", [top_n]),
        "label_source": rows(con, "select label_source, count(*) from metadata group by 1 order by 2 desc, 1"),
    }


def ontology_counts(con: duckdb.DuckDBPyConnection, onto: Ontology) -> tuple[list[OntologyNode], list[tuple]]:
    """Every ontology node in file order with its direct and subtree pair counts.

    Subtree totals count distinct pairs (a caption labelled with two melanomas counts once for
    'melanocytic'), joined in DuckDB through a node -> ancestor table, so it scales with the
    corpus rather than with Python loops. Labels that name no node are returned apart.
    """
    nodes = {n.id: OntologyNode(n.id, n.name, onto.level(n.id), n.parent if n.parent != onto.root else None,
                                children=[c for c in onto.children.get(n.id, [])]) for n in onto.walk()}
    names, ancestors = [], []
    for node_id in nodes:
        for anc in onto.path(node_id):
            names.append(onto.name(node_id))
            ancestors.append(anc)
    con.register("report_ontology_ancestors", pa.table({"name": names, "ancestor": ancestors}))
    con.register("report_ontology_nodes", pa.table({"id": list(nodes), "name": [n.name for n in nodes.values()]}))
    try:
        con.execute("create or replace temp table report_labels as "
                    "select distinct pair_id, unnest(disease_labels) l from metadata")
        for node_id, n in rows(con, "select a.ancestor, count(distinct pair_id) from report_labels "
                                    "join report_ontology_ancestors a on a.name = report_labels.l group by 1"):
            nodes[node_id].total = int(n)
        for node_id, n in rows(con, "select o.id, count(distinct pair_id) from report_labels "
                                    "join report_ontology_nodes o on o.name = report_labels.l group by 1"):
            nodes[node_id].direct = int(n)
        unmatched = rows(con, "select l, count(*) from report_labels where l not in "
                              "(select name from report_ontology_nodes) group by 1 order by 2 desc, 1")
    finally:
        con.execute("drop table if exists report_labels")
        con.unregister("report_ontology_ancestors")
        con.unregister("report_ontology_nodes")
    return list(nodes.values()), unmatched


def concepts(con: duckdb.DuckDBPyConnection, concepts_file: str | Path) -> dict[str, list[tuple]]:
    """Concept mentions per concept, grouped as ontology/concepts.yaml groups them (zeros kept)."""
    vocab = load_concepts(concepts_file)
    counts = dict(rows(con, "select c, count(*) from (select unnest(skin_concepts) c from metadata) group by 1"))
    groups: dict[str, list[tuple]] = {}
    for entry in vocab:
        groups.setdefault(entry.group or "other", []).append((entry.name, int(counts.pop(entry.name, 0))))
    if counts:
        groups["not in concepts.yaml"] = sorted(counts.items())
    return {g: sorted(v, key=lambda t: (-t[1], t[0])) for g, v in groups.items()}


def captions(con: duckdb.DuckDBPyConnection) -> dict:
    """Token counts of the full and the truncated captions of the corpus pairs, and where cuts fell.

    Only pairs in the final corpus (metadata) count, like every other distribution here.
    """
    con.execute("create or replace temp view report_captions as "
                "select * from captions where pair_id in (select pair_id from metadata)")
    total = scalar(con, "select count(*) from report_captions")
    truncated = scalar(con, "select count(*) from report_captions where cut <> 'none'")
    return {
        "full": rows(con, "select n_tokens, count(*) from report_captions group by 1 order by 1"),
        "kept": rows(con, "select n_tokens_kept, count(*) from report_captions group by 1 order by 1"),
        "cuts": rows(con, "select cut, count(*) from report_captions group by 1 order by 2 desc, 1"),
        "total": total,
        "truncated": truncated,
        "share_truncated": truncated / total if total else 0.0,
        "max_kept": scalar(con, "select max(n_tokens_kept) from report_captions"),
        "median_tokens": scalar(con, "select median(n_tokens) from report_captions"),
    }


def dedup(con: duckdb.DuckDBPyConnection) -> dict:
    """The funnel from source records to training samples, and what exact and near links removed."""
    funnel = [
        ("source records", scalar(con, "select count(*) from pairs") + scalar(con, "select count(*) from rejects where stage = 'ingest'")),
        ("pairs accepted", scalar(con, "select count(*) from pairs")),
        ("images", scalar(con, "select count(*) from images")),
        ("distinct files (SHA-256)", scalar(con, "select count(distinct sha256) from images")),
        ("clusters (exact + near)", scalar(con, "select count(distinct cluster_id) from clusters")),
        ("pairs in the corpus", scalar(con, "select count(*) from metadata")),
    ]
    return {
        "funnel": funnel,
        "by_match_kind": rows(con, "select match_kind, count(*) from clusters group by 1 order by 2 desc, 1"),
        "edges": rows(con, "select kind, verified_by, count(*), min(distance), max(distance), round(min(score), 3) "
                           "from duplicate_edges group by 1, 2 order by 1, 2"),
        "edge_windows": rows(con, "select matched_window, count(*) from duplicate_edges where kind <> 'exact' "
                                   "group by 1 order by 1"),
        "cluster_sizes": rows(con, "select cluster_size, count(distinct cluster_id) from clusters group by 1 order by 1"),
        "largest_cluster": rows(con, "select max(cluster_size), round(max(cluster_size) / count(*), 5) from clusters"),
        # The diameter of a star cluster: its farthest member from the canonical, in pHash bits
        # (a crop is far: it matched a window) and in verification score (the weakest link).
        "cluster_diameters": rows(con, "select diameter, count(*), round(min(weakest), 3) from (select cluster_id, "
                                       "max(distance_to_canonical) diameter, min(score_to_canonical) weakest "
                                       "from clusters group by 1 having count(*) > 1) group by 1 order by 1"),
        "decontaminated_images": scalar(con, "select count(*) from decontaminated"),
        "decontaminated_pairs": scalar(con, "select count(*) from pairs join decontaminated using (image_id)"),
        "benchmark_matches": rows(con, "select benchmark, count(*), count(distinct image_id) from benchmark_matches "
                                       "group by 1 order by 1"),
    }


def rejects(con: duckdb.DuckDBPyConnection, examples: int) -> list[dict]:
    """Rejects per stage and reason, with the first few rows of each as examples."""
    sample = rows(con, "select stage, reason, source, record_id, detail, path from "
                       "(select *, row_number() over (partition by stage, reason order by source, record_id) k from rejects) "
                       "where k <= ? order by all", [examples])
    out = []
    for stage, reason, n in rows(con, "select stage, reason, count(*) from rejects group by all order by 3 desc, 1, 2"):
        out.append({"stage": stage, "reason": reason, "rows": int(n),
                    "examples": [r[2:] for r in sample if r[0] == stage and r[1] == reason]})
    return out


LEAKAGE_CHECKS: tuple[tuple[str, str, str], ...] = (
    ("clusters in two splits", "a duplicate cluster's images in more than one split",
     "select count(*) from (select cluster_id from metadata group by 1 having count(distinct split) > 1)"),
    ("split groups in two splits", "clusters joined by a lesion/patient key in more than one split",
     "select count(*) from (select split_group from splits group by 1 having count(distinct split) > 1)"),
    ("group keys in two splits", "one source group key (lesion, patient) in more than one split",
     "select count(*) from (select source, group_key from metadata where group_key is not null "
     "group by all having count(distinct split) > 1)"),
    ("identical files in two splits", "the same SHA-256 in more than one split",
     "select count(*) from (select sha256 from metadata group by 1 having count(distinct split) > 1)"),
    ("duplicate links across splits", "an exact/near link between images in different splits",
     "select count(*) from duplicate_edges e join clusters a on a.image_id = e.image_id_a "
     "join clusters b on b.image_id = e.image_id_b join splits sa on sa.cluster_id = a.cluster_id "
     "join splits sb on sb.cluster_id = b.cluster_id where sa.split <> sb.split"),
    ("benchmark matches in train", "a train pair whose image is a verified copy of a benchmark image",
     "select count(*) from metadata m join benchmark_matches b on b.image_id in (m.image_id, m.canonical_image_id) "
     "where m.split = 'train'"),
    ("decontaminated images in the corpus", "an image removed for a benchmark match still in the metadata",
     "select count(*) from metadata m join decontaminated d using (image_id)"),
)


def splits(con: duckdb.DuckDBPyConnection) -> dict:
    """Split sizes (pairs, images, clusters, groups) and leakage checks that must all be zero."""
    sizes = rows(con, "select split, count(*) pairs, count(distinct image_id) images, count(distinct cluster_id) clusters "
                      "from metadata group by 1 order by 2 desc, 1")
    groups = dict(rows(con, "select split, count(distinct split_group) from splits group by 1"))
    checks = [{"check": name, "meaning": meaning, "violations": scalar(con, sql)} for name, meaning, sql in LEAKAGE_CHECKS]
    return {"sizes": [(*r, int(groups.get(r[0], 0))) for r in sizes],
            "cluster_splits": rows(con, "select split, count(*) from splits group by 1 order by 2 desc, 1"),
            "checks": checks}


def demographics(con: duckdb.DuckDBPyConnection, top_n: int) -> dict[str, list[tuple]]:
    """Body sites, age, sex and Fitzpatrick skin type of the corpus pairs ('not stated' counted too)."""
    age_groups = dict(rows(con, "select coalesce(age_group, ?), count(*) from metadata group by 1", [NOT_STATED]))
    skin = dict(rows(con, "select skin_type, count(*) from metadata group by 1"))
    return {
        "body_location": rows(con, "select b, count(*) from (select unnest(body_locations) b from metadata) "
                                   "group by 1 order by 2 desc, 1 limit ?", [top_n])
        + [(NOT_STATED, scalar(con, "select count(*) from metadata where len(body_locations) = 0"))],
        "age_group": [(g, int(age_groups.get(g, 0))) for g in (*AGE_GROUPS, NOT_STATED)],
        "age_years": rows(con, "select age_years, count(*) from metadata where age_years is not null group by 1 order by 1"),
        "sex": rows(con, "select coalesce(sex, ?) s, count(*) from metadata group by 1 order by s = ?, 2 desc, 1",
                    [NOT_STATED, NOT_STATED]),
        "skin_type": [(f"FST {t}", int(skin.get(t, 0))) for t in range(1, 7)] + [(NOT_STATED, int(skin.get(None, 0)))],
    }


def scale(con: duckdb.DuckDBPyConnection, shard_dirs: dict[str, Path] | None = None) -> dict:
    """What decides the corpus's cost at Derm1M size: pairs per image, the largest cluster, and
    per split the shard bytes (the tars on disk, when ``shard_dirs`` names their folders), the
    JPEG bytes and how many of those repeat an image already in the split.

    A caption is a sample in ``shard.captions: pair`` mode, so an image with five captions is
    stored five times; ``cluster`` mode stores it once with all five (``repeated`` is what it saves).
    """
    per_image = rows(con, "select count(*), count(distinct canonical_image_id) from metadata")[0]
    splits = rows(con, "select split, count(distinct key), count(*), count(distinct shard), "
                       "sum(jpg_bytes) filter (where txt_member = 'txt') from shard_index group by 1 order by 1")
    distinct = dict(rows(con, "select split, sum(b) from (select split, image_id, max(jpg_bytes) b from shard_index "
                              "where txt_member = 'txt' group by 1, 2) group by 1"))
    shards = []
    for split, samples, pairs, tars, jpg in splits:
        folder = (shard_dirs or {}).get(split)
        on_disk = sum(p.stat().st_size for p in folder.glob("*.tar")) if folder is not None and folder.is_dir() else 0
        shards.append((split, int(samples), int(pairs), int(tars), int(on_disk), int(jpg or 0),
                       int((jpg or 0) - (distinct.get(split) or 0))))
    return {
        "pairs": int(per_image[0]),
        "images": int(per_image[1]),
        "pairs_per_image": per_image[0] / per_image[1] if per_image[1] else 0.0,
        "max_pairs_per_image": scalar(con, "select max(n) from (select count(*) n from metadata "
                                           "group by canonical_image_id)"),
        "largest_cluster": scalar(con, "select max(cluster_size) from clusters"),
        "largest_cluster_share": float(rows(con, "select coalesce(max(cluster_size) / count(*), 0) from clusters")[0][0]),
        "shards": shards,   # (split, samples, pairs, tars, tar bytes, jpg bytes, repeated jpg bytes)
    }


def collect(con: duckdb.DuckDBPyConnection, onto: Ontology, concepts_file: str | Path, top_n: int = 15,
            examples: int = 3, shard_dirs: dict[str, Path] | None = None) -> dict:
    """Everything the report, the card and the plot CSVs show, in one dictionary."""
    nodes, unmatched = ontology_counts(con, onto)
    return {
        "scale": scale(con, shard_dirs),
        "overview": overview(con),
        "sources": sources(con),
        "conditions": conditions(con, top_n),
        "ontology": {"nodes": nodes, "unmatched": unmatched, "root": onto.root},
        "concepts": concepts(con, concepts_file),
        "captions": captions(con),
        "dedup": dedup(con),
        "rejects": rejects(con, examples),
        "splits": splits(con),
        "demographics": demographics(con, top_n),
    }
