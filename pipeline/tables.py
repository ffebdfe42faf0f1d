"""The column contract of every table (``schemas/*.yaml``) and atomic, deterministic parquet I/O.

Stages talk only through parquet tables. Writing goes through :func:`write_table`, which checks
the frame against the declared schema (no missing, extra or mistyped columns), writes to a
temporary file beside the target and renames it, so a killed stage never leaves a half table,
and uses fixed writer options so equal inputs give byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pipeline.errors import PipelineError
from pipeline.faults import kill_point

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "int16": pa.int16(),
    "int8": pa.int8(),
    "float64": pa.float64(),
    "float32": pa.float32(),
    "bool": pa.bool_(),
    "list<string>": pa.list_(pa.string()),
    "list<int64>": pa.list_(pa.int64()),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    description: str


@dataclass(frozen=True)
class TableSchema:
    """One table's contract: its name, where it lives, its key and its columns."""

    name: str
    description: str
    stage: str
    path: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def arrow(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, _TYPES[c.type], nullable=c.nullable) for c in self.columns])

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


@cache
def load_schema(name: str) -> TableSchema:
    """Read ``schemas/<name>.yaml``; unknown types are a bug in the schema file, reported by name."""
    path = SCHEMA_DIR / f"{name}.yaml"
    if not path.exists():
        raise PipelineError(f"no schema {name!r}: expected {path}")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    cols = []
    for c in doc["columns"]:
        if c["type"] not in _TYPES:
            raise PipelineError(f"{path}: column {c['name']} has unknown type {c['type']!r}")
        cols.append(Column(c["name"], c["type"], bool(c.get("nullable", False)), c.get("description", "")))
    return TableSchema(
        name=doc["table"],
        description=doc.get("description", ""),
        stage=doc.get("stage", ""),
        path=doc.get("path", ""),
        key=tuple(doc.get("key", [])),
        columns=tuple(cols),
    )


def all_schemas() -> list[TableSchema]:
    """Every declared table, sorted by name (used by ``derm1m query`` and the dataset card)."""
    return [load_schema(p.stem) for p in sorted(SCHEMA_DIR.glob("*.yaml"))]


def to_arrow(frame: pd.DataFrame | pa.Table | pa.RecordBatch | Iterable[dict], schema_name: str) -> pa.Table:
    """Validate and convert rows to an Arrow table with exactly the declared columns and types.

    Arrow input (a DuckDB result, another table's row group) is cast column by column, so it
    never passes through Python objects: the same values give the same table either way."""
    schema = load_schema(schema_name)
    if isinstance(frame, pa.RecordBatch):
        frame = pa.Table.from_batches([frame])
    if isinstance(frame, pa.Table):
        return _arrow_from_arrow(frame, schema, schema_name)
    if not isinstance(frame, pd.DataFrame):
        # Rows as dicts: a key the schema lacks is ignored and a missing one is null, as a
        # DataFrame built with the schema's columns would give (without building one).
        rows = list(frame)
        return _arrow_from_columns({n: [r.get(n) for r in rows] for n in schema.names}, schema, schema_name)
    return _arrow_from_columns({c: frame[c].tolist() for c in frame.columns}, schema, schema_name)


def _arrow_from_columns(columns: dict[str, list], schema: TableSchema, schema_name: str) -> pa.Table:
    missing = [n for n in schema.names if n not in columns]
    extra = [n for n in columns if n not in schema.names]
    if missing or extra:
        raise PipelineError(
            f"table {schema_name}: columns differ from schemas/{schema_name}.yaml "
            f"(missing {missing}, unexpected {extra}); update the schema or the stage"
        )
    arrays = []
    for col in schema.columns:
        pylist = [None if _is_missing(v) else v for v in columns[col.name]]
        try:
            arr = pa.array(pylist, type=_TYPES[col.type])
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise PipelineError(f"table {schema_name}: column {col.name} is not {col.type}: {exc}") from None
        if not col.nullable and arr.null_count:
            raise PipelineError(f"table {schema_name}: column {col.name} has {arr.null_count} nulls but is declared non-nullable")
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema.arrow)


def _arrow_from_arrow(table: pa.Table, schema: TableSchema, schema_name: str) -> pa.Table:
    missing = [n for n in schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in schema.names]
    if missing or extra:
        raise PipelineError(
            f"table {schema_name}: columns differ from schemas/{schema_name}.yaml "
            f"(missing {missing}, unexpected {extra}); update the schema or the stage"
        )
    arrays = []
    for col in schema.columns:
        try:
            arr = table.column(col.name).cast(_TYPES[col.type])
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise PipelineError(f"table {schema_name}: column {col.name} is not {col.type}: {exc}") from None
        if not col.nullable and arr.null_count:
            raise PipelineError(f"table {schema_name}: column {col.name} has {arr.null_count} nulls but is declared non-nullable")
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema.arrow)


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:
        return True
    return value is pd.NA or value is pd.NaT


def write_table(frame: pd.DataFrame | Iterable[dict], schema_name: str, path: str | Path) -> pa.Table:
    """Write rows as parquet atomically and deterministically; rows are sorted by the schema key."""
    table = to_arrow(frame, schema_name)
    key = load_schema(schema_name).key
    if key and table.num_rows:
        table = table.sort_by([(k, "ascending") for k in key])
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, **_PARQUET_OPTIONS)
    return table


_PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "use_dictionary": True,
                    "write_statistics": True}
ROW_GROUP_SIZE = 256_000


class TableWriter:
    """Write a table chunk by chunk, for stages that stream a million rows in bounded memory.

    Same contract as :func:`write_table`: schema-checked, atomic (a temporary file renamed on
    success), and deterministic. Chunks must arrive sorted by the schema key (they come from a
    table that is); a key out of order is an error, not a silently unsorted file. Row groups
    have a fixed size whatever the chunk size, so the bytes do not depend on batching (with the
    default size they equal :func:`write_table`'s; a smaller ``row_group_size`` bounds memory).
    """

    def __init__(self, schema_name: str, path: str | Path, row_group_size: int | None = None) -> None:
        self.schema_name = schema_name
        self.row_group_size = row_group_size
        self.schema = load_schema(schema_name)
        self.path = Path(path)
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._last_key: tuple | None = None

    def __enter__(self) -> TableWriter:
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._writer = pq.ParquetWriter(self._tmp, self.schema.arrow, **_PARQUET_OPTIONS)
        return self

    def write(self, frame: pd.DataFrame | pa.Table | pa.RecordBatch | Iterable[dict]) -> None:
        table = to_arrow(frame, self.schema_name)
        if not table.num_rows:
            return
        if self.schema.key:
            keys = list(zip(*(table.column(k).to_pylist() for k in self.schema.key), strict=True))
            previous = [self._last_key] if self._last_key is not None else []
            ordered = previous + keys
            if any(a > b for a, b in zip(ordered, ordered[1:], strict=False)):
                raise PipelineError(f"table {self.schema_name}: rows reached the writer out of key order "
                                    f"{self.schema.key}; stream from a sorted input")
            self._last_key = keys[-1]
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= (self.row_group_size or ROW_GROUP_SIZE):
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._pending:
            return
        size = self.row_group_size or ROW_GROUP_SIZE
        table = pa.concat_tables(self._pending)
        full = table.num_rows if final else table.num_rows - table.num_rows % size
        for start in range(0, full, size):
            # One chunk per row group: the parquet writer starts a page batch at every chunk
            # boundary, so chunks shaped by the callers' batches would shape the bytes.
            self._writer.write_table(table.slice(start, min(size, full - start)).combine_chunks())
        rest = table.slice(full)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self._flush(final=True)
            self._writer.close()
        finally:
            if exc_type is None:
                self._atomic.__exit__(None, None, None)
            else:
                self._atomic.__exit__(exc_type, exc, tb)


def read_table_schema(schema_name: str, path: str | Path) -> pa.Schema:
    """Check a table file exists and still matches its schema, without reading its rows."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: missing input table {schema_name}; run the stage that writes it (dvc repro)")
    schema = pq.read_schema(path)
    expected = load_schema(schema_name).names
    if schema.names != expected:
        raise PipelineError(
            f"{path}: columns {schema.names} do not match schemas/{schema_name}.yaml {expected}; "
            "re-run the stage that writes it"
        )
    return schema


def read_table(schema_name: str, path: str | Path) -> pd.DataFrame:
    """Read a table and check it still matches its schema (a stale file fails loudly)."""
    read_table_schema(schema_name, path)
    return pq.read_table(path).to_pandas()


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    The temporary is named ``.<name>.<pid>.<random>.tmp``: one left by a killed process (its
    pid no longer running) is removed by the next write of the same file, so kills do not
    accumulate litter beside the outputs.
    """
    if Path(path).is_dir() and not Path(path).is_symlink():
        raise PipelineError(f"{path} is a folder; an output file cannot replace it: set the output to a file path "
                            "in params.yaml")
    tmp = _new_temp_file(Path(path))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def current_umask() -> int:
    """The process's umask, read without changing it where the kernel reports it (Linux >= 4.7);
    elsewhere set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_temp_file(dest: Path) -> Path:
    """An empty ``.<name>.<pid>.<random>.tmp`` beside ``dest`` (after sweeping dead writers' ones).

    mkstemp creates it 0600; it is opened up to what ``open()`` would have made (0666 minus the
    umask: 0644 usually) so the published file is readable by a teammate or a web server."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(dest)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(dest), suffix=".tmp", dir=dest.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    return Path(tmp)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's live process
        return True
    return True


_CLEANED: set[str] = set()


def clean_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temporaries (``.<name>.<pid>.<random>.tmp``) beside ``path`` whose writer is dead.

    A SIGKILL runs no cleanup, so this is where a killed run's half-written file or folder goes;
    temporaries of a live process (a concurrent writer) are left alone. Each folder is swept
    once per process: a stale temporary comes from a process that died before this one looked,
    and a shard folder of 10,000 tars must not be listed again for every index written into it.
    """
    folder = Path(path).parent
    key = os.path.abspath(folder)
    removed: list[Path] = []
    if key in _CLEANED or not folder.is_dir():
        return removed
    _CLEANED.add(key)
    for entry in folder.iterdir():
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        parts = name[:-len(".tmp")].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit() or _pid_alive(int(parts[1])):
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def write_json(obj: object, path: str | Path) -> None:
    """Write JSON atomically with sorted keys, so metrics files diff cleanly and rebuild identically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


#: The file every folder output carries (see :func:`check_replaceable`): "derm1m wrote this folder".
OUTPUT_MARKER = ".derm1m-output"


def check_replaceable(dest: Path, new: Path) -> None:
    """Refuse to swap the folder ``new`` in for ``dest`` unless ``dest`` is a previous output.

    Why: the swap throws the old folder away, so an ``out`` pointing at a folder of inputs
    (``ingest.out: data``, a source's root, a home folder) would delete them. A folder derm1m
    wrote carries :data:`OUTPUT_MARKER`; a folder without it (written before the marker existed)
    may be replaced only when everything in it is also in the new output (the same tables, an
    older run), and is refused when it holds anything else. Files and links are never replaced
    by a folder.
    """
    if not (dest.exists() or dest.is_symlink()):
        return
    if dest.is_symlink() or not dest.is_dir():
        raise PipelineError(f"output folder {dest} exists and is not a folder (a file or a link); derm1m does not "
                            "replace it; fix: point the stage's out in params.yaml at a new folder")
    if (dest / OUTPUT_MARKER).is_file():
        return
    foreign = sorted(p.name for p in dest.iterdir() if not (new / p.name).exists())
    if foreign:
        shown = ", ".join(repr(n[:60]) for n in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise PipelineError(f"output folder {dest} holds files derm1m did not write ({shown}); replacing it would "
                            "delete them; fix: point the stage's out in params.yaml at a new folder (or move them away)")


@contextmanager
def atomic_dir(path: str | Path, partial: bool = False, mark: bool = True):
    """Yield a fresh temporary directory beside ``path``; swap it in only if the block succeeds.

    The previous directory stays intact until the new one is complete, so a killed stage leaves
    the last good output (or nothing), never a mixture; the swap goes through a commit journal
    (:class:`Publication`), so even a kill between its two renames is repaired by the next run.
    ``partial`` names the temporary ``.<name>.partial`` and keeps it when the block fails, for
    stages that resume from a killed run's completed work (shard).
    ``mark`` (default) writes :data:`OUTPUT_MARKER` into the folder, so a later run knows it may
    replace it; ``derm1m unpack`` leaves it out (its folder is the user's data, never replaced).
    """
    path = Path(path)
    with Publication(path.parent / f".{path.name}.commit.json") as pub:
        yield pub.directory(path, partial=partial, mark=mark)


_Move = tuple[Path, Path, int]   # (temporary, output, inode of the temporary when journaled)


def _journal_moves(journal: Path) -> list[_Move]:
    doc = json.loads(journal.read_text(encoding="utf-8"))
    return [(Path(a), Path(b), int(ino)) for a, b, ino in doc["moves"]]


def _old_of(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.old"


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported.

    Why: a folder cannot be replaced by ``rename`` while the old one exists, and moving the old
    one aside first leaves a moment with no output at all; the exchange has no such moment.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return done == 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _apply_moves(moves: list[_Move]) -> None:
    """Put each finished temporary in place of its output; idempotent, so a rerun can finish it.

    An output whose inode is the journaled temporary's is already in place (a temporary still
    present then holds the previous output, swapped out). A folder replaces a folder by an
    atomic exchange; where the system lacks one, the old folder moves to ``.<name>.old`` first.
    """
    for tmp, dest, ino in moves:
        old = _old_of(dest)
        if dest.exists() and dest.stat().st_ino == ino:
            _remove(tmp)
        elif tmp.exists():
            if tmp.is_dir() and dest.exists():
                if _exchange(tmp, dest):
                    kill_point("publish_mid_swap")
                    _remove(tmp)
                    continue
                _remove(old)
                os.replace(dest, old)
                kill_point("publish_mid_swap")
            os.replace(tmp, dest)
        _remove(old)


def recover_publication(journal: str | Path) -> bool:
    """Finish a publication a killed run had committed (its journal exists); True if there was one.

    Every temporary named in a journal was complete when the journal was written, so finishing
    the renames (roll forward) gives exactly the outputs that run would have left.
    """
    journal = Path(journal)
    if not journal.is_file():
        return False
    try:
        moves = _journal_moves(journal)
    except (OSError, ValueError, KeyError, TypeError):
        moves = []   # cannot happen with an atomically written journal; never trust a broken one
    _apply_moves(moves)
    journal.unlink(missing_ok=True)
    return True


class Publication:
    """Several outputs (files and folders) written to temporaries and published together.

    A stage with more than one output (dedup's folder, shard's three split folders plus two
    tables, the report's pages and figures) writes each to a temporary beside it; on success
    the list of (temporary, output) renames goes to a journal written atomically, then the
    renames run and the journal is deleted. A kill before the journal leaves every previous
    output untouched (and the temporaries are cleaned up by the next run); a kill after it
    is finished by :func:`recover_publication` when the stage next starts. Either way no mixture
    of old and new outputs survives a run.
    """

    def __init__(self, journal: str | Path) -> None:
        self.journal = Path(journal)
        self.moves: list[tuple[Path, Path]] = []
        self._keep: set[Path] = set()
        self._marked: set[Path] = set()
        self._journaled = False

    def __enter__(self) -> Publication:
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        recover_publication(self.journal)
        return self

    def file(self, dest: str | Path) -> Path:
        """A temporary file path that becomes ``dest`` on commit."""
        dest = Path(dest)
        if dest.is_dir() and not dest.is_symlink():
            raise PipelineError(f"{dest} is a folder; an output file cannot replace it; fix: set the output to a "
                                "file path in params.yaml")
        tmp = _new_temp_file(dest)
        self.moves.append((tmp, dest))
        return tmp

    def directory(self, dest: str | Path, partial: bool = False, mark: bool = True) -> Path:
        """A fresh temporary folder that becomes ``dest`` on commit (see :func:`atomic_dir`).

        ``dest`` is checked now (a file or a link there is refused before any work) and again
        at commit, against the new folder's contents (:func:`check_replaceable`)."""
        dest = Path(dest)
        if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
            check_replaceable(dest, dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(dest)
        if partial:
            tmp = partial_dir(dest)
            tmp.mkdir()   # the caller moved a killed run's partial folder aside first
            self._keep.add(tmp)
        else:
            tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(dest), suffix=".tmp", dir=dest.parent))
            tmp.chmod(0o777 & ~current_umask())   # mkdtemp makes 0700; a published folder is 0755 usually
        if mark:
            self._marked.add(tmp)   # the marker is written at commit: the caller may replace the folder itself
        self.moves.append((tmp, dest))
        return tmp

    def commit(self) -> None:
        for tmp, dest in self.moves:
            if tmp in self._marked and tmp.is_dir():
                (tmp / OUTPUT_MARKER).write_text("written by derm1m; a later run may replace this folder\n",
                                                 encoding="utf-8")
            if tmp.is_dir():
                check_replaceable(dest, tmp)
        kill_point("publish_before_journal")
        with atomic_path(self.journal) as tmp:
            moves = [[os.path.abspath(a), os.path.abspath(b), os.stat(a).st_ino] for a, b in self.moves]
            tmp.write_text(json.dumps({"moves": moves}, indent=1), encoding="utf-8")
        self._journaled = True
        kill_point("publish_after_journal")
        _apply_moves(_journal_moves(self.journal))
        self.journal.unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove the temporaries (a failed block), except resumable partial folders."""
        for tmp, _ in self.moves:
            if tmp not in self._keep:
                _remove(tmp)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                if not self._journaled:   # once journaled, the next run finishes the renames
                    self.discard()
                raise
        else:
            self.discard()


def partial_dir(dest: str | Path) -> Path:
    """Where a resumable folder output is built: ``.<name>.partial`` beside it (a fixed name, so
    the next run finds what a killed one completed)."""
    dest = Path(dest)
    return dest.parent / f".{dest.name}.partial"
