"""``derm1m query``: read-only SQL over every table, as DuckDB views named after schemas/.

Views read the parquet files in place (nothing is copied). Every table declared in
``schemas/`` gets a view; a table whose file does not exist yet (a stage not run, no benchmark
configured) is an empty view with the declared column types, so the same SQL works on every
corpus.

Confinement, in two layers so it does not rest on a pattern match: (1) DuckDB's own parser
classifies the SQL and only one ``SELECT`` statement (or an ``EXPLAIN [ANALYZE]`` of one) is
run, which refuses COPY ... TO, ATTACH, INSTALL/LOAD, EXPORT DATABASE, SET, PRAGMA, CALL,
CREATE, ... however they are spelt, commented, chained or wrapped in EXPLAIN ANALYZE (which
executes what it wraps); (2) the engine itself has no file to write to: the views read the
table files through pyarrow datasets registered on the connection (pyarrow opens them for
reading only, in this process), and the connection is then locked with
``enable_external_access=false`` and no ``allowed_paths`` at all, so DuckDB may open no file,
read or write (``read_csv('/etc/passwd')``, ``COPY``, a table file), no network and no
extension, and ``lock_configuration=true`` stops a statement from undoing it.
``--allow-writes`` lifts both, for a user who wants COPY/ATTACH/extensions on purpose.

A query runs in a worker thread so that Ctrl-C (SIGINT) interrupts DuckDB mid-query
(:meth:`duckdb.DuckDBPyConnection.interrupt`) and the command exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pipeline.corpus import table_paths
from pipeline.csvsafe import neutralise_row
from pipeline.errors import PipelineError
from pipeline.params import load_params, section
from pipeline.tables import all_schemas, atomic_path

# The statement kinds a read-only query may be (DuckDB's parser decides, not a regex).
_READ_ONLY_TYPES = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}

# schemas/ type -> DuckDB type, for the empty views of tables whose file is absent.
_SQL_TYPES = {"string": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER", "int16": "SMALLINT", "int8": "TINYINT",
              "float64": "DOUBLE", "float32": "FLOAT", "bool": "BOOLEAN", "list<string>": "VARCHAR[]",
              "list<int64>": "BIGINT[]"}

# Stages whose output folder may hold a rejects.parquet, in pipeline order.
_REJECT_STAGES = ("ingest", "dedup", "annotate", "truncate", "split", "metadata")


def _out(params: dict, stage: str) -> Path:
    return Path(section(params, stage, {"out": str})["out"])


def view_paths(params: dict, root: Path = Path(".")) -> dict[str, list[Path]]:
    """Table name -> parquet file(s) backing its view (one per declared schema)."""
    paths = {k: [root / v] for k, v in table_paths(params).items()}
    dedup, split, shards = root / _out(params, "dedup"), root / _out(params, "split"), root / _out(params, "shard")
    paths["duplicate_edges"] = [dedup / "duplicate_edges.parquet"]
    paths["benchmark_matches"] = [dedup / "benchmark_matches.parquet"]
    paths["decontaminated"] = [split / "decontaminated.parquet"]
    paths["shard_index"] = [shards / "manifest.parquet"]
    paths["metadata"] = [root / _out(params, "metadata") / "metadata.parquet"]
    stage_dirs = [root / _out(params, s) for s in _REJECT_STAGES if s in params] + [shards]
    paths["rejects"] = [d / "rejects.parquet" for d in stage_dirs]
    return paths


def _literal(path: Path) -> str:
    return "'" + path.as_posix().replace("'", "''") + "'"


def register_views(con: duckdb.DuckDBPyConnection, params: dict, root: Path = Path("."),
                   through_arrow: bool = True) -> list[str]:
    """Create a view per declared table on ``con``; return the names backed by a file.

    Absent tables become empty views typed from their schema, so a query never fails with
    "table does not exist" just because, say, no benchmark set was configured.
    ``through_arrow`` (the confined default) backs each view by a pyarrow dataset registered on
    the connection, so DuckDB itself never needs a path to the table files (nothing it could
    write to); without it the views call ``read_parquet`` on the paths (the duckdb CLI's
    init script, ``--allow-writes``).
    """
    paths = view_paths(params, root)
    made = []
    for schema in all_schemas():
        present = [f for f in paths.get(schema.name, []) if f.exists()]
        if present and through_arrow:
            schemas = [pq.read_schema(f) for f in present]
            dataset = pads.dataset([str(f) for f in present], format="parquet",
                                   schema=pa.unify_schemas(schemas, promote_options="permissive"))
            con.register(f"__file_{schema.name}", dataset)
            con.execute(f"create or replace view {schema.name} as select * from __file_{schema.name}")
            made.append(schema.name)
        elif present:
            listing = ", ".join(_literal(f) for f in present)
            con.execute(f"create or replace view {schema.name} as "
                        f"select * from read_parquet([{listing}], union_by_name=true)")
            made.append(schema.name)
        else:
            cols = ", ".join(f'cast(null as {_SQL_TYPES[c.type]}) as "{c.name}"' for c in schema.columns)
            con.execute(f"create or replace view {schema.name} as select {cols} where false")
    return made


_REFUSED = ("derm1m query is read-only and runs one SELECT statement (got {found}): COPY/ATTACH/"
            "INSTALL/LOAD/CREATE/SET/PRAGMA/EXPLAIN ANALYZE of a write/... are refused; --allow-writes lifts this")


def _explained(sql: str) -> str | None:
    """The statement an ``EXPLAIN [ANALYZE | (options)]`` wraps, or None when it is not one.

    Why: DuckDB classifies ``EXPLAIN ANALYZE COPY ... TO`` as EXPLAIN, but ANALYZE executes the
    wrapped statement, so the wrapped statement must pass the same check."""
    tokens = [(pos, kind) for pos, kind in duckdb.tokenize(sql) if kind != duckdb.token_type.comment]
    if not tokens or _word(sql, tokens, 0) != "explain":
        return None
    i = 1
    if i < len(tokens) and _word(sql, tokens, i) == "analyze":
        i += 1
    elif i < len(tokens) and sql[tokens[i][0]] == "(":
        depth = 0
        while i < len(tokens):
            ch = sql[tokens[i][0]]
            depth += ch == "("
            depth -= ch == ")"
            i += 1
            if depth == 0:
                break
    return sql[tokens[i][0]:] if i < len(tokens) else ""


def _word(sql: str, tokens: list, i: int) -> str:
    start = tokens[i][0]
    end = tokens[i + 1][0] if i + 1 < len(tokens) else len(sql)
    return sql[start:end].strip().lower()


def check_read_only(sql: str, allow_writes: bool = False) -> None:
    """Refuse anything but one SELECT statement, or an EXPLAIN of one (the views must stay what they are).

    DuckDB's own parser classifies the statement, so comments, letter case, a leading ``WITH``
    or a second statement after ``;`` do not hide a COPY, ATTACH, INSTALL, SET or PRAGMA; an
    EXPLAIN is unwrapped (``EXPLAIN ANALYZE`` runs its statement) and its statement checked too.
    """
    if allow_writes:
        return
    kinds = _statement_kinds(sql)
    if len(kinds) == 1 and kinds[0] == duckdb.StatementType.EXPLAIN:
        inner = _explained(sql.strip().rstrip(";"))
        inner_kinds = _statement_kinds(inner) if inner else []
        if len(inner_kinds) != 1 or inner_kinds[0] != duckdb.StatementType.SELECT:
            found = "EXPLAIN of " + (", ".join(k.name for k in inner_kinds) or "nothing")
            raise PipelineError(_REFUSED.format(found=found))
        return
    if len(kinds) != 1 or kinds[0] not in _READ_ONLY_TYPES:
        found = ", ".join(k.name for k in kinds) or "nothing"
        raise PipelineError(_REFUSED.format(found=found))


def _statement_kinds(sql: str) -> list:
    try:
        return [st.type for st in duckdb.extract_statements(sql)]
    except duckdb.Error as exc:
        raise PipelineError(f"query failed: {str(exc).splitlines()[0]}") from None


def confine(con: duckdb.DuckDBPyConnection) -> None:
    """Lock ``con``: no file at all (read or write), no network, no extension, no way back.

    Why besides :func:`check_read_only`: a SELECT can still call table functions
    (``read_csv('/etc/passwd')``, ``read_text``, ``glob``) and a statement the check missed
    could write; DuckDB's switches stop those in the engine, whatever the SQL looks like. The
    views need no path: they read pyarrow datasets (see :func:`register_views`).
    """
    con.execute("set enable_external_access = false")
    con.execute("set lock_configuration = true")


def connect(params: dict, root: Path = Path("."), allow_writes: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with every view registered and, unless ``allow_writes``,
    locked away from every file; an error if no table exists yet."""
    con = duckdb.connect(":memory:")
    if not register_views(con, params, root, through_arrow=not allow_writes):
        con.close()
        raise PipelineError(f"no tables found under {root}; run `dvc repro` first (or pass --root)")
    if not allow_writes:
        confine(con)
    return con


def interruptible(con: duckdb.DuckDBPyConnection, work: Callable[[], object]) -> object:
    """Run ``work`` (a DuckDB call on ``con``) in a thread; Ctrl-C interrupts DuckDB and re-raises.

    Why: DuckDB holds the main thread inside C++ for the whole query, so Python's SIGINT
    handler would only run once the query finished; waiting in short joins keeps the main
    thread responsive and :meth:`~duckdb.DuckDBPyConnection.interrupt` stops the engine."""
    box: dict[str, object] = {}
    done = threading.Event()   # not Thread.join: an interrupted join can leave is_alive() wrong

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the main thread below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="derm1m-query", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        for _ in range(150):   # DuckDB checks for an interrupt between chunks: ask until it stops
            con.interrupt()
            if done.wait(0.2):
                break
        raise
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


def execute(con: duckdb.DuckDBPyConnection, sql: str, allow_writes: bool = False) -> duckdb.DuckDBPyConnection:
    """Run one checked read-only statement; DuckDB's errors become one-line PipelineErrors."""
    check_read_only(sql, allow_writes)
    try:
        return interruptible(con, lambda: con.execute(sql))  # type: ignore[return-value]
    except duckdb.PermissionException as exc:
        raise PipelineError(f"query refused: {str(exc).splitlines()[0]} (derm1m query reads only the corpus "
                            "tables; --allow-writes lifts this)") from None
    except duckdb.InterruptException:
        raise KeyboardInterrupt from None
    except duckdb.Error as exc:
        raise PipelineError(f"query failed: {str(exc).splitlines()[0]}") from None


def run_query(sql: str, params: dict, root: Path = Path("."), allow_writes: bool = False) -> tuple[list[str], list[tuple]]:
    """Column names and rows of one read-only query over a fresh connection."""
    con = connect(params, root, allow_writes)
    try:
        cur = execute(con, sql, allow_writes)
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, interruptible(con, cur.fetchall)  # type: ignore[return-value]
    finally:
        with contextlib.suppress(duckdb.Error):
            con.close()


def format_table(cols: list[str], rows: Iterable[tuple], max_width: int = 60) -> str:
    """Aligned plain-text columns, cells cut at ``max_width`` (what a terminal shows well)."""
    rows = list(rows)
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [min(max([len(c)] + [len(r[i]) for r in cells]), max_width) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join((v if len(v) <= w else v[:w - 1] + "…").ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_rows(cols: list[str], rows: list[tuple], fmt: str) -> str:
    """Rows as text in ``fmt`` (table, csv or json)."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(neutralise_row(cols))
        w.writerows(neutralise_row(r) for r in rows)   # no formula cells (pipeline/csvsafe.py)
        return buf.getvalue()
    if fmt == "json":
        return json.dumps([dict(zip(cols, r, strict=True)) for r in rows], default=str, ensure_ascii=False, indent=1) + "\n"
    return format_table(cols, rows)


def describe_tables(params: dict | None, root: Path) -> str:
    """Every declared table with its description, file, row count (when built) and columns."""
    paths = view_paths(params, root) if params is not None else {}
    out = []
    for schema in all_schemas():
        files = [f for f in paths.get(schema.name, []) if f.exists()]
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files) if files else None
        state = f"{rows:,} rows" if rows is not None else "not built yet"
        out.append(f"{schema.name}: {schema.description}")
        out.append(f"  ({schema.path}; {state}" + (f"; key {', '.join(schema.key)})" if schema.key else ")"))
        for c in schema.columns:
            null = " null" if c.nullable else ""
            out.append(f"  {c.name:<26} {c.type + null:<18} {c.description}")
        out.append("")
    return "\n".join(out)


def write_output(text: str, output: str | None) -> None:
    """Print, or write atomically to ``output`` (a half-written export never appears)."""
    if not output:
        sys.stdout.write(text)
        return
    with atomic_path(output) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"wrote {output}", file=sys.stderr)


def write_parquet(con: duckdb.DuckDBPyConnection, sql: str, output: str, allow_writes: bool = False) -> int:
    """Query result as a parquet file (zstd, like the pipeline's tables); returns the row count.

    The file is written by pyarrow in this process, not by DuckDB, so a confined connection
    can still export a result to the path the user named on the command line."""
    check_read_only(sql, allow_writes)
    try:
        table = interruptible(con, lambda: con.sql(sql).to_arrow_table())  # Arrow without a copy
    except duckdb.InterruptException:
        raise KeyboardInterrupt from None
    except duckdb.PermissionException as exc:
        raise PipelineError(f"query refused: {str(exc).splitlines()[0]} (derm1m query reads only the corpus "
                            "tables; --allow-writes lifts this)") from None
    except duckdb.Error as exc:
        raise PipelineError(f"query failed: {str(exc).splitlines()[0]}") from None
    with atomic_path(output) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return table.num_rows


# -- interactive shell ---------------------------------------------------------------------
def view_script(params: dict, root: Path) -> str:
    """SQL that recreates the views over the table paths, for the ``duckdb`` CLI's ``-init``
    file (used with ``--allow-writes`` only: see :func:`shell`)."""
    con = duckdb.connect(":memory:")
    try:
        register_views(con, params, root, through_arrow=False)
        rows = con.execute("select view_name, sql from duckdb_views() where not internal order by 1").fetchall()
    finally:
        con.close()
    return "".join(f"{sql.rstrip(';')};\n" for _, sql in rows)


def python_shell(con: duckdb.DuckDBPyConnection, stdin: Iterable[str] | TextIO, stdout: TextIO,
                 prompt: Callable[[str], None] | None = None, allow_writes: bool = False) -> int:
    """A small SQL loop over ``con``: statements end with ';', ``.tables`` lists views, ``.quit`` leaves.

    The fallback when the ``duckdb`` CLI is not installed: the same views and the same read-only
    rule as ``derm1m query``. Errors print one line and the loop goes on.
    """
    buffer: list[str] = []
    show = prompt or (lambda p: (stdout.write(p), stdout.flush()))
    show("derm1m> ")
    for line in stdin:
        text = line.strip()
        if not buffer and text in (".quit", ".exit", "\\q"):
            break
        if not buffer and text == ".tables":
            names = [r[0] for r in con.execute("select view_name from duckdb_views() where not internal order by 1").fetchall()]
            stdout.write("  ".join(names) + "\n")
        elif not buffer and text in (".help", "help"):
            stdout.write("SQL ending with ';' runs; .tables lists the views; .quit leaves\n")
        elif text:
            buffer.append(line)
            if text.endswith(";"):
                sql = "".join(buffer).strip().rstrip(";")
                buffer.clear()
                try:
                    cur = execute(con, sql, allow_writes)
                    cols = [d[0] for d in cur.description] if cur.description else []
                    stdout.write(format_table(cols, cur.fetchall()))
                except PipelineError as exc:
                    stdout.write(f"error: {exc}\n")
        show("   ...> " if buffer else "derm1m> ")
    stdout.write("\n")
    return 0


def shell(params: dict, root: Path, allow_writes: bool = False) -> int:
    """The interactive shell: the Python loop over the confined connection; with
    ``allow_writes``, the ``duckdb`` CLI on the same views when it is installed.

    Why not the CLI when confined: its views must name the table files in ``allowed_paths``,
    and DuckDB's allowed paths are writable (``COPY ... TO`` a table file); the Python loop
    runs every statement through :func:`check_read_only` on a connection that can open no
    file at all."""
    binary = shutil.which("duckdb")
    if binary and allow_writes:
        with tempfile.TemporaryDirectory(prefix="derm1m-shell-") as tmp:
            init = Path(tmp) / "views.sql"
            init.write_text(view_script(params, root), encoding="utf-8")
            return subprocess.call([binary, "-init", str(init)])
    why = ("the duckdb CLI is not installed" if not binary else
           "the duckdb CLI cannot be kept from writing the table files (--allow-writes opens it)")
    print(f"derm1m query --shell: {why}; using a minimal Python shell over the same views "
          "(statements end with ';', .tables, .quit)", file=sys.stderr)
    con = connect(params, root, allow_writes)
    try:
        if sys.stdin.isatty():
            return python_shell(con, _terminal_lines(), sys.stdout, prompt=_remember_prompt, allow_writes=allow_writes)
        return python_shell(con, sys.stdin, sys.stdout, allow_writes=allow_writes)
    finally:
        con.close()


_PROMPT = ["derm1m> "]


def _remember_prompt(text: str) -> None:
    """On a terminal the prompt is shown by input() (so readline can redraw it), not printed."""
    _PROMPT[0] = text


def _terminal_lines() -> Iterator[str]:
    """Lines typed at a terminal through input(), with readline's editing and history where available."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (importing it is what turns on line editing for input())
    while True:
        try:
            yield input(_PROMPT[0]) + "\n"
        except EOFError:
            return


def check_output_not_a_table(output: Path, params: dict, root: Path) -> None:
    """Refuse an ``--output`` that is one of the corpus tables (or a stage's output folder).

    Why: ``derm1m query`` is read-only; writing a result over ``pairs.parquet`` would change
    the corpus behind DVC's back as surely as a ``COPY ... TO`` would."""
    target = Path(os.path.realpath(output))
    for table, files in view_paths(params, root).items():
        for f in files:
            real = Path(os.path.realpath(f))
            if target == real or real.parent == target:
                raise PipelineError(f"--output {output} is the corpus table {table} ({f}); derm1m query does not "
                                    "write the corpus: choose another path")


def main(args: argparse.Namespace) -> int:
    root = Path(args.root)
    params_file = root / "params.yaml"
    allow = bool(getattr(args, "allow_writes", False))
    if args.tables:
        print(describe_tables(load_params(params_file) if params_file.exists() else None, root), end="")
        return 0
    params = load_params(params_file)
    if args.output:
        check_output_not_a_table(Path(args.output), params, root)
    if args.shell:
        if args.sql:
            raise PipelineError("--shell takes no SQL argument")
        return shell(params, root, allow)
    if not args.sql:
        raise PipelineError("give SQL to run, e.g. derm1m query \"select split, count(*) from metadata group by 1\"")
    if args.format == "parquet":
        if not args.output:
            raise PipelineError("--format parquet writes a file: add --output FILE.parquet")
        con = connect(params, root, allow)
        try:
            n = write_parquet(con, args.sql, args.output, allow)
        finally:
            con.close()
        print(f"wrote {n} rows to {args.output}", file=sys.stderr)
        return 0
    cols, rows = run_query(args.sql, params, root, allow)
    write_output(format_rows(cols, rows, args.format), args.output)
    return 0
