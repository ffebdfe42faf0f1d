"""``derm1m query``: read-only SQL over every table, as DuckDB views named after schemas/.

Views read the parquet files in place (nothing is copied). Statements that write or reach
outside the corpus (COPY ... TO, ATTACH, INSTALL, LOAD, CREATE, INSERT, ...) are refused.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import duckdb

from pipeline.corpus import table_paths
from pipeline.errors import PipelineError
from pipeline.params import load_params, section
from pipeline.tables import all_schemas

_WRITES = re.compile(r"^\s*(copy|attach|detach|install|load|create|insert|update|delete|drop|alter|export|import|"
                     r"set|pragma|call|checkpoint|vacuum)\b", re.I)


def view_paths(params: dict, root: Path = Path(".")) -> dict[str, list[Path]]:
    """Table name -> parquet file(s) backing its view."""
    paths = {k: [root / v] for k, v in table_paths(params).items()}
    dedup = root / section(params, "dedup", {"out": str})["out"]
    paths["duplicate_edges"] = [dedup / "duplicate_edges.parquet"]
    shards = root / section(params, "shard", {"out": str})["out"]
    paths["shard_index"] = [shards / "manifest.parquet"]
    paths["metadata"] = [root / section(params, "metadata", {"out": str})["out"] / "metadata.parquet"]
    stage_dirs = [root / section(params, s, {"out": str})["out"] for s in ("ingest", "dedup")] + [shards]
    paths["rejects"] = [d / "rejects.parquet" for d in stage_dirs]
    return paths


def register_views(con: duckdb.DuckDBPyConnection, params: dict, root: Path = Path(".")) -> list[str]:
    made = []
    for name, files in view_paths(params, root).items():
        present = [f for f in files if f.exists()]
        if not present:
            continue
        listing = ", ".join("'" + f.as_posix().replace("'", "''") + "'" for f in present)
        con.execute(f"create or replace view {name} as select * from read_parquet([{listing}], union_by_name=true)")
        made.append(name)
    return made


def run_query(sql: str, params: dict, root: Path = Path(".")) -> tuple[list[str], list[tuple]]:
    if _WRITES.search(sql) or re.search(r"\bcopy\b.*\bto\b", sql, re.I | re.S):
        raise PipelineError("derm1m query is read-only: COPY/ATTACH/INSTALL/LOAD/CREATE/... are refused")
    con = duckdb.connect(":memory:")
    try:
        if not register_views(con, params, root):
            raise PipelineError("no tables found; run `dvc repro` first (or pass --root)")
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()
    except duckdb.Error as exc:
        raise PipelineError(f"query failed: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


def main(args: argparse.Namespace) -> int:
    root = Path(args.root)
    params = load_params(root / "params.yaml")
    if args.tables:
        for schema in all_schemas():
            print(f"{schema.name}: {schema.description}")
            for c in schema.columns:
                print(f"  {c.name:<28} {c.type:<14} {c.description}")
        return 0
    if not args.sql:
        raise PipelineError("give SQL to run, e.g. derm1m query \"select split, count(*) from metadata group by 1\"")
    cols, rows = run_query(args.sql, params, root)
    if args.format == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(cols)
        w.writerows(rows)
    elif args.format == "json":
        print(json.dumps([dict(zip(cols, r, strict=True)) for r in rows], default=str, ensure_ascii=False, indent=1))
    else:
        widths = [max([len(str(c))] + [len(str(r[i])) for r in rows]) for i, c in enumerate(cols)]
        widths = [min(w, 60) for w in widths]
        print("  ".join(str(c).ljust(w) for c, w in zip(cols, widths, strict=True)))
        for r in rows:
            print("  ".join(str(v)[:60].ljust(w) for v, w in zip(r, widths, strict=True)))
    return 0
