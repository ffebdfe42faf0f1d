"""Published outputs honour the umask: a teammate or a web server in a shared project folder can
read every table, report and shard folder (mkstemp/mkdtemp would leave them 0600/0700)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.stages.report import write_text
from pipeline.tables import Publication, TableWriter, current_umask, write_table


@pytest.fixture(params=[0o022, 0o027, 0o002], ids=["umask_022", "umask_027", "umask_002"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_without_changing_it(umask: int) -> None:
    assert current_umask() == umask
    assert current_umask() == umask


def test_tables_text_and_published_folders_follow_the_umask(tmp_path: Path, umask: int) -> None:
    rows = [{"source": "s", "record_id": "r", "stage": "ingest", "reason": "x", "detail": "d", "path": None}]
    write_table(rows, "rejects", tmp_path / "rejects.parquet")
    write_text(tmp_path / "index.html", "<p>report</p>")
    with TableWriter("rejects", tmp_path / "streamed.parquet") as writer:
        writer.write(rows)
    with Publication(tmp_path / ".commit.json") as pub:
        folder = pub.directory(tmp_path / "train")
        (folder / "shard-000000.tar").write_bytes(b"x")
        write_table(rows, "rejects", pub.file(tmp_path / "manifest.parquet"))
    for name in ("rejects.parquet", "index.html", "streamed.parquet", "manifest.parquet", "train/shard-000000.tar"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name
    assert _mode(tmp_path / "train") == 0o777 & ~umask
