"""``derm1m query`` on the real test corpus: a view per schema, --tables, every output format,
the shell fallback, the read-only rule, and the README's example queries."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.query import connect, python_shell, run_query, view_script
from pipeline.tables import all_schemas

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root(corpus: dict) -> Path:
    (corpus["root"] / "params.yaml").write_text(yaml.safe_dump(corpus["params"]))
    return corpus["root"]


def test_every_schema_has_a_view_with_its_declared_columns(corpus: dict) -> None:
    con = connect(corpus["params"])
    try:
        views = {r[0] for r in con.execute("select view_name from duckdb_views() where not internal").fetchall()}
        for schema in all_schemas():
            assert schema.name in views
            cols = [d[0] for d in con.execute(f"select * from {schema.name} limit 0").description]
            assert set(schema.names) <= set(cols), schema.name
        assert con.execute("select count(*) from benchmark_matches").fetchone()[0] == 0
        assert con.execute("select count(*) from decontaminated").fetchone()[0] == 0
    finally:
        con.close()


def test_absent_tables_are_empty_typed_views(corpus: dict, tmp_path: Path) -> None:
    """A corpus built before benchmark_matches existed still answers queries that name it."""
    params = json.loads(json.dumps(corpus["params"]))
    params["dedup"]["out"] = str(tmp_path / "nothing-here")
    cols, rows = run_query("select count(*) n, max(distance) + 1 d from benchmark_matches", params)
    assert cols == ["n", "d"] and rows == [(0, None)]
    cols, rows = run_query("select typeof(distance) from duplicate_edges limit 0", params)
    assert rows == []


def test_tables_lists_every_column_with_description(root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["query", "--root", str(root), "--tables"]) == 0
    out = capsys.readouterr().out
    for schema in all_schemas():
        assert f"{schema.name}: {schema.description}" in out
        for c in schema.columns:
            assert re.search(rf"^  {re.escape(c.name)} +{re.escape(c.type)}.*{re.escape(c.description[:30])}", out, re.M), c.name
    assert "(data/split/decontaminated.parquet; 0 rows" in out and "not built yet" not in out


def test_output_formats(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sql = "select split, count(*) as n from metadata group by 1 order by 1"
    assert main(["query", "--root", str(root), sql]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["split", "n"] and table[-1] == "(3 rows)"
    assert main(["query", "--root", str(root), "--format", "json", sql]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["split"] for r in rows] == ["holdout", "train", "validation"]
    out = tmp_path / "splits.parquet"
    assert main(["query", "--root", str(root), "--format", "parquet", "--output", str(out), sql]) == 0
    assert pq.read_table(out).to_pylist() == rows
    csv_out = tmp_path / "splits.csv"
    assert main(["query", "--root", str(root), "--format", "csv", "--output", str(csv_out), sql]) == 0
    assert csv_out.read_text().splitlines()[0] == "split,n"
    capsys.readouterr()
    assert main(["query", "--root", str(root), "--format", "parquet", sql]) == 2
    assert "--output" in capsys.readouterr().err


@pytest.mark.parametrize("sql", ["copy (select * from pairs) to 'x.csv'", "attach 'x.db'", "select 1; drop view pairs",
                                 "install httpfs", "create table t as select 1",
                                 # spellings a pattern match would miss: comments, case, chains, other verbs
                                 "/* harmless */ ATTACH 'x.db' AS x", "-- note\nCoPy pairs TO 'x.parquet'",
                                 "select 1; attach 'x.db'", "select 1 /* ; */ ; copy pairs to 'x.csv'",
                                 "with t as (select 1) select * from t; copy pairs to 'x.csv'",
                                 "load httpfs", "pragma version", "set enable_external_access = true",
                                 "call pragma_version()", "export database 'exported'", "checkpoint",
                                 "insert into pairs select * from pairs", "detach memory"])
def test_writes_are_refused(corpus: dict, sql: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="read-only"):
        run_query(sql, corpus["params"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sql", ["select * from read_csv('/etc/passwd')", "select * from read_text('/etc/hostname')",
                                 "select count(*) from glob('/*')", "select * from read_blob('/etc/hostname')",
                                 "select * from read_parquet('{outside}')", "select * from read_json('{outside}')"])
def test_select_cannot_read_outside_the_corpus(corpus: dict, sql: str, tmp_path: Path) -> None:
    """A SELECT passes the statement check; DuckDB's own switches stop its file access."""
    outside = tmp_path / "outside.parquet"
    pq.write_table(pq.read_table(Path(corpus["params"]["ingest"]["out"]) / "pairs.parquet"), outside)
    with pytest.raises(PipelineError, match="refused"):
        run_query(sql.format(outside=outside), corpus["params"])


def test_confinement_cannot_be_lifted_from_sql(corpus: dict) -> None:
    """The lock holds even for a statement that slipped past the check (here: sent directly)."""
    import duckdb

    con = connect(corpus["params"])
    try:
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("set enable_external_access = true")
        assert con.execute("select count(*) from pairs").fetchone()[0] == corpus["truth"]["n_pairs"]
    finally:
        con.close()


def test_allow_writes_lifts_the_refusal(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--allow-writes: COPY ... TO and reading other files work; without it the same command is exit 2."""
    out = tmp_path / "sources.csv"
    sql = f"copy (select source, count(*) n from pairs group by 1 order by 1) to '{out}' (header)"
    assert main(["query", "--root", str(root), sql]) == 2
    err = capsys.readouterr().err.strip()
    assert "read-only" in err and "--allow-writes" in err and "\n" not in err and not out.exists()
    assert main(["query", "--root", str(root), "--allow-writes", sql]) == 0
    assert out.read_text().splitlines()[0] == "source,n"
    capsys.readouterr()
    assert main(["query", "--root", str(root), "--allow-writes", "--format", "csv",
                 f"select count(*) as n from read_csv('{out}')"]) == 0
    assert capsys.readouterr().out.splitlines()[1] != "0"
    assert main(["query", "--root", str(root), f"select count(*) from read_csv('{out}')"]) == 2
    assert "refused" in capsys.readouterr().err


def test_bad_sql_is_one_line(root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["query", "--root", str(root), "select nope from metadata"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("derm1m query: error: query failed:") and "\n" not in err


def test_python_shell_runs_statements_over_the_views(corpus: dict) -> None:
    con = connect(corpus["params"])
    out = io.StringIO()
    try:
        python_shell(con, io.StringIO(".tables\nselect count(*) as n\n  from pairs;\ncopy pairs to 'x.csv';\n"
                                      "select nope;\n.quit\nselect 1;\n"), out)
    finally:
        con.close()
    text = out.getvalue()
    assert "benchmark_matches" in text and "decontaminated" in text
    assert "n\n" in text and "(1 row)" in text
    assert text.count("error:") == 2 and "read-only" in text


def test_shell_falls_back_to_python_without_duckdb_cli(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))      # no duckdb binary on PATH
    monkeypatch.setattr("sys.stdin", io.StringIO("select count(*) as clusters from splits;\n"))
    assert main(["query", "--root", str(root), "--shell"]) == 0
    captured = capsys.readouterr()
    assert "duckdb CLI is not installed" in captured.err
    assert "clusters" in captured.out and "(1 row)" in captured.out


def test_duckdb_cli_init_script_recreates_the_views(corpus: dict) -> None:
    """What `--shell` hands the duckdb CLI (-init) builds the same views in a fresh database."""
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        con.execute(view_script(corpus["params"], Path(".")))
        n = con.execute("select count(*) from metadata").fetchone()[0]
        views = {r[0] for r in con.execute("select view_name from duckdb_views() where not internal").fetchall()}
    finally:
        con.close()
    assert n == corpus["truth"]["n_pairs"] and views == {s.name for s in all_schemas()}
    assert "enable_external_access" not in view_script(corpus["params"], Path("."))


def test_confined_connection_cannot_write_a_table_file(corpus: dict, tmp_path: Path) -> None:
    """Even a COPY sent straight to the locked connection (past the statement check) cannot
    touch a table file: DuckDB may open no file at all; the views read through pyarrow."""
    import duckdb

    pairs = Path(corpus["params"]["ingest"]["out"]) / "pairs.parquet"
    before = pairs.read_bytes()
    con = connect(corpus["params"])
    try:
        for sql in (f"copy (select 42 as x) to '{pairs}' (format csv)",
                    f"explain analyze copy (select 42 as x) to '{pairs}' (format csv)",
                    f"select * from read_parquet('{pairs}')"):
            with pytest.raises(duckdb.Error, match="disabled by configuration"):
                con.execute(sql)
        assert con.execute("select count(*) from pairs").fetchone()[0] == corpus["truth"]["n_pairs"]
    finally:
        con.close()
    assert pairs.read_bytes() == before


@pytest.mark.parametrize("sql", ["explain analyze copy (select 42 as x) to '{pairs}' (format csv)",
                                 "EXPLAIN /* c */ ANALYZE copy pairs to '{pairs}'",
                                 "explain (analyze) copy pairs to '{pairs}' (format csv)",
                                 "explain analyze create table t as select 1",
                                 "explain analyze insert into pairs select * from pairs"])
def test_explain_analyze_of_a_write_is_refused(corpus: dict, sql: str) -> None:
    """EXPLAIN ANALYZE executes the statement it wraps: the wrapped statement is checked too."""
    pairs = Path(corpus["params"]["ingest"]["out"]) / "pairs.parquet"
    before = pairs.read_bytes()
    with pytest.raises(PipelineError, match="read-only"):
        run_query(sql.format(pairs=pairs), corpus["params"])
    assert pairs.read_bytes() == before


@pytest.mark.parametrize("sql", ["explain select count(*) from pairs", "explain analyze select count(*) from pairs",
                                 "EXPLAIN (FORMAT json) select 1", "explain analyze with t as (select 1) select * from t"])
def test_explain_of_a_select_runs(corpus: dict, sql: str) -> None:
    cols, rows = run_query(sql, corpus["params"])
    assert cols and rows


def test_ctrl_c_interrupts_a_long_query_with_exit_130(root: Path) -> None:
    """SIGINT during a query that would run for minutes: DuckDB is interrupted, exit 130, one line."""
    import os
    import signal
    import subprocess
    import sys
    import time

    sql = "select count(*) from range(200000) a, range(200000) b where (a.range * b.range) % 7 = 3"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "query", "--root", str(root), sql],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(4)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["derm1m query: interrupted"]


def test_output_over_a_corpus_table_is_refused(root: Path, capsys: pytest.CaptureFixture) -> None:
    """--output naming a table file (or its folder) is exit 2; the table is untouched."""
    pairs = root / "data/ingest/pairs.parquet"
    before = pairs.read_bytes()
    for fmt, out in (("parquet", pairs), ("csv", pairs), ("csv", pairs.parent)):
        assert main(["query", "--root", str(root), "--format", fmt, "--output", str(out), "select 1 as x"]) == 2
        assert "does not write the corpus" in capsys.readouterr().err
    assert pairs.read_bytes() == before


def test_duckdb_cli_is_used_only_with_allow_writes(root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    """A confined --shell never hands the table paths to the duckdb CLI (its allowed paths are writable)."""
    fake = tmp_path / "duckdb"
    fake.write_text("#!/bin/sh\necho cli-was-run\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO("select count(*) as n from splits;\n"))
    assert main(["query", "--root", str(root), "--shell"]) == 0
    captured = capsys.readouterr()
    assert "cannot be kept from writing" in captured.err and "(1 row)" in captured.out


def readme_queries() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Example queries", 1)[1].split("\n## ", 1)[0]
    return re.findall(r'^derm1m query "(.+?)"$', section, re.M | re.S)


def test_readme_example_queries_run(root: Path) -> None:
    queries = readme_queries()
    assert len(queries) >= 5
    params = yaml.safe_load((root / "params.yaml").read_text())
    for sql in queries:
        cols, _ = run_query(sql, params, Path("/"))
        assert cols, sql


def test_shell_on_a_terminal_reads_lines_with_input(root: Path, tmp_path: Path) -> None:
    """Through a pseudo-terminal (the path people use): prompts, a continued statement, .quit."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    master, slave = pty.openpty()
    env = {**os.environ, "PATH": str(tmp_path)}          # no duckdb CLI: the Python shell
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "query", "--root", str(root), "--shell"],
                            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO)
    os.close(slave)
    seen = b""

    def read_until(marker: bytes, timeout: float = 60) -> None:
        nonlocal seen
        end = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < end:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    return

    try:
        read_until(b"derm1m> ")
        os.write(master, b"select count(*)\n")
        read_until(b"...> ")
        os.write(master, b"  as n from splits;\n")
        read_until(b"(1 row)")
        os.write(master, b".quit\n")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = seen.decode(errors="replace")
    assert "duckdb CLI is not installed" in text and "(1 row)" in text
