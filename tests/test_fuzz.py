"""Fuzzing the readers of user files (issue 16): seeded random mutations of CSV, JSON, JSON Lines,
WebVTT and params files, fed to every adapter kind that reads them and to the params loader.

The only allowed outcomes are records, reject rows (with documented reason codes, writable as a
rejects table) and, for configuration, a one-line :class:`~pipeline.errors.PipelineError` (exit
2). Anything else (a traceback, a hang past :data:`PER_INPUT_S`, a record lost between the file
and the adapter's output) fails the test with the seed and the input that caused it.

Accounting per input, independent of the parser: every data line of a mutated CSV that is a
clean row by itself (printable ASCII, no quote, the header's number of fields, an image name)
must come out as at least one record or reject (a CSV cannot merge it silently into a caption),
and every non-blank line of a JSON Lines file is exactly one record or reject.
"""

from __future__ import annotations

import contextlib
import csv
import json
import random
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.params import load_params
from pipeline.rejects import REASONS, Reject
from pipeline.sources import ADAPTERS, SourceRecord
from pipeline.stages.ingest import BadPath, build_adapters, confine, undecodable_field
from pipeline.tables import to_arrow

pytestmark = pytest.mark.hostile

REPO = Path(__file__).resolve().parents[1]
SEED = 20260516
PER_INPUT_S = 5          # an input that takes longer is a hang
CAPTION = "Erythematous psoriasis plaque with silvery scale on the extensor surface of the elbow."
# What the mutations insert: CSV/JSON syntax, line ends of every kind, NUL, bytes that are not
# UTF-8, a BOM, JSON escapes of lone surrogates, bidi controls, nesting, long runs.
PALETTE = [b'"', b",", b";", b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xe9", b"\xef\xbb\xbf", b"\\ud800",
           b"\\udcff", b"\xe2\x80\xae", b"\xc2\x85", b"\xe2\x80\xa8", b"{", b"}", b"[", b"]", b":", b"'", b"-->",
           b"00:00:01.000", b"null", b"NaN", b"1e309", b"-1", b"&", b"*", b"../", b"/etc/passwd", b"\t", b"=",
           b"[" * 3000, b"a" * 200_000, b'""', b"#", b"%", b"\\"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: insert from :data:`PALETTE`, flip a byte, delete or duplicate a
    span, swap or repeat lines, truncate."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        pos = rng.randint(0, len(out))
        if op < 0.45:
            out[pos:pos] = rng.choice(PALETTE)
        elif op < 0.55 and out:
            out[min(pos, len(out) - 1)] = rng.randrange(256)
        elif op < 0.65:
            del out[pos:pos + rng.randint(1, 40)]
        elif op < 0.75:
            out[pos:pos] = out[pos:pos + rng.randint(1, 80)]
        elif op < 0.9:
            lines = bytes(out).split(b"\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            if rng.random() < 0.5:
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines.insert(i, lines[j])
            out = bytearray(b"\n".join(lines))
        else:
            del out[pos:]
    return bytes(out)


class Hang(Exception):
    pass


def _alarm(signum, frame):  # noqa: ANN001
    raise Hang(f"no result within {PER_INPUT_S} s")


def outcomes(produce: Callable[[], Iterator]) -> list:
    """Every item ``produce()`` yields, within the time limit; only records and rejects allowed."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, PER_INPUT_S)
    try:
        items = list(produce())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    for item in items:
        assert isinstance(item, (SourceRecord, Reject)), type(item)
        if isinstance(item, Reject):
            assert item.reason in REASONS
    return items


def ingest_checks(adapter, items: list) -> list[dict]:
    """What ingest does before opening images (encoding, confinement), and the reject rows it writes."""
    rows = [i.row() for i in items if isinstance(i, Reject)]
    for rec in items:
        if isinstance(rec, SourceRecord) and not undecodable_field(rec):
            with contextlib.suppress(BadPath):
                confine(adapter.root, rec.image_relpath)
    return rows


IMAGE = re.compile(r"\.(?:jpe?g|png)$")


def clean_rows(data: bytes, width: int) -> int:
    """Data lines that are rows by themselves: printable ASCII, no quote, ``width`` fields, an image."""
    n = 0
    for raw in data.split(b"\n")[1:]:
        line = raw.decode("ascii", "replace")
        if not raw or not all(32 <= b < 127 for b in raw) or '"' in line:
            continue
        fields = next(csv.reader([line]))
        if len(fields) == width and any(IMAGE.search(f.strip()) for f in fields):
            n += 1
    return n


def _csv(rows: list[list[str]]) -> bytes:
    import io
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8")


TEXTBOOK = _csv([["image_path", "caption", "book", "chapter"],
                 *[[f"figures/f{i}.jpg", f"{CAPTION} Case {i}, with scale.", "Atlas", f"Chapter {i}"] for i in range(6)],
                 ["figures/q.jpg", 'Quoted "silvery" plaque,\non the elbow.', "Atlas", "1"]])
FIGURES_JSONL = "\n".join(json.dumps({"article_id": f"A{i % 2}", "figure_id": f"F{i}", "image_path": f"img/{i}.jpg",
                                      "caption": f"(A) {CAPTION} (B) Eczema of the hand.", "article_title": "Psoriasis",
                                      "panel": "AB"[i % 2]}) for i in range(6)).encode() + b"\n"
FIGURES_CSV = _csv([["article_id", "figure_id", "image_path", "caption", "article_title"],
                    *[[f"A{i}", f"F{i}", f"img/{i}.jpg", CAPTION, "Psoriasis"] for i in range(5)]])
THREAD = json.dumps({"thread_id": "t1", "title": "Itchy rash", "posts": [
    {"post_id": "p1", "body": CAPTION, "images": ["img/a.jpg", "img/b.jpg"],
     "replies": [{"post_id": "p2", "body": "Looks like nummular eczema.", "images": []},
                 {"post_id": "p3", "body": "Another photo.", "images": ["img/c.jpg"]}]}]}).encode()
VTT = ("WEBVTT\n\n" + "".join(f"00:00:{2 * i:02d}.000 --> 00:00:{2 * i + 2:02d}.000\n{CAPTION} Part {i}.\n\n"
                              for i in range(5))).encode()
SEGMENTS = json.dumps({"segments": [{"start": 2 * i, "end": 2 * i + 2, "text": f"{CAPTION} {i}"} for i in range(5)]}).encode()
FRAMES = _csv([["file", "timestamp"], *[[f"frame_{i}.jpg", f"00:00:{2 * i:02d}.5"] for i in range(5)]])
PAD = _csv([["patient_id", "lesion_id", "age", "gender", "fitspatrick", "region", "diagnostic", "img_id", "biopsed"],
            *[[f"PAT_{i}", str(i), str(30 + i), "MALE", "2", "ARM", "BCC", f"PAT_{i}_{i}_1.png", "True"] for i in range(5)]])
RELEASE = _csv([["filename", "caption", "source_type"], *[[f"img/{i}.jpg", CAPTION, "edu"] for i in range(5)]])


def _run_adapter(kind: str, root: Path, options: dict | None = None) -> list:
    adapter = ADAPTERS[kind](kind, root, options or {})
    try:
        items = outcomes(adapter.records)
    except PipelineError as exc:   # the fixed layouts stop the source with a one-line error (exit 2)
        assert "\n" not in str(exc)
        return []
    rows = ingest_checks(adapter, items)
    if rows:
        to_arrow(rows, "rejects")   # reject rows can be written (no lone surrogates, right types)
    return items


# (name, base bytes, inputs, writer(root, data) -> (adapter kind, options), accounting(data, items))
def _textbook(root: Path, data: bytes):
    (root / "captions.csv").write_bytes(data)
    return "textbook", {}


def _figures_jsonl(root: Path, data: bytes):
    (root / "figures.jsonl").write_bytes(data)
    return "article_figures", {}


def _figures_csv(root: Path, data: bytes):
    (root / "figures.csv").write_bytes(data)
    return "article_figures", {"figures": "figures.csv"}


def _forum(root: Path, data: bytes):
    (root / "thread.json").write_bytes(data)
    return "forum", {}


def _video_file(name: str) -> Callable[[Path, bytes], tuple]:
    def write(root: Path, data: bytes):
        folder = root / "v1"
        folder.mkdir(exist_ok=True)
        for i in range(5):
            (folder / f"frame_{2 * i + 1}.jpg").write_bytes(b"")
        if name == "frames.csv":
            (folder / "transcript.vtt").write_bytes(VTT)
        (folder / name).write_bytes(data)
        return "video", {}
    return write


def _pad(root: Path, data: bytes):
    (root / "metadata.csv").write_bytes(data)
    return "public_dataset", {"layout": "pad_ufes_20"}


def _release(root: Path, data: bytes):
    (root / "Derm1M_v2_pretrain.csv").write_bytes(data)
    return "derm1m_release", {"csv_files": ["Derm1M_v2_pretrain.csv"]}


def _csv_accounting(width: int) -> Callable[[bytes, list], None]:
    def check(data: bytes, items: list) -> None:
        if any(isinstance(i, Reject) and "." in i.record_id and ":" not in i.record_id and "/" not in i.record_id
               for i in items):
            return   # the whole file is one reject (its header lacks a column): every row is accounted for by it
        assert len(items) >= clean_rows(data, width), "a row of the file is neither a record nor a reject"
    return check


def _jsonl_accounting(data: bytes, items: list) -> None:
    lines = [ln for ln in data.decode("utf-8-sig", "replace").splitlines() if ln.strip()]
    assert len(items) == len(lines), "every JSON line is one record or one reject"


TARGETS = [
    ("textbook_csv", TEXTBOOK, 600, _textbook, _csv_accounting(4)),
    ("figures_jsonl", FIGURES_JSONL, 400, _figures_jsonl, _jsonl_accounting),
    ("figures_csv", FIGURES_CSV, 200, _figures_csv, _csv_accounting(5)),
    ("forum_json", THREAD, 300, _forum, None),
    ("video_vtt", VTT, 200, _video_file("transcript.vtt"), None),
    ("video_json", SEGMENTS, 150, _video_file("transcript.json"), None),
    ("video_frames_csv", FRAMES, 150, _video_file("frames.csv"), None),
    ("pad_ufes_csv", PAD, 150, _pad, None),
    ("release_csv", RELEASE, 150, _release, _csv_accounting(3)),
]


def test_fuzz_adapters_and_params(tmp_path: Path) -> None:
    """>= 2,000 mutated inputs in under 60 s: records, rejects or a one-line error; never anything else."""
    rng = random.Random(SEED)
    start = time.monotonic()
    counts: dict[str, int] = {}
    for name, base, n, write, account in TARGETS:
        for k in range(n):
            data = mutate(base, rng)
            root = tmp_path / f"{name}-{k}"
            root.mkdir()
            kind, options = write(root, data)
            try:
                items = _run_adapter(kind, root, options)
                if account and items:
                    account(data, items)
            except Exception as exc:
                raise AssertionError(f"{name} input {k} (seed {SEED}): {type(exc).__name__}: {str(exc)[:300]}\n"
                                     f"{data[:300]!r}") from exc
            counts[name] = counts.get(name, 0) + 1
    counts["params"] = _fuzz_params(tmp_path, rng, 350)
    elapsed = time.monotonic() - start
    total = sum(counts.values())
    print(f"\nfuzz: {total} mutated inputs in {elapsed:.1f} s: {counts}")
    assert total >= 2000
    assert elapsed < 60, f"{total} inputs took {elapsed:.1f} s"


def _fuzz_params(tmp_path: Path, rng: random.Random, n: int) -> int:
    """Mutated params.yaml files: load_params + build_adapters give params or a one-line PipelineError."""
    source = tmp_path / "atlas"
    source.mkdir()
    (source / "captions.csv").write_bytes(TEXTBOOK)
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["ingest"]["sources"] = [{"name": "atlas", "adapter": "textbook", "path": str(source)},
                                   {"name": "vid", "adapter": "video", "path": str(source), "window_s": 5.0}]
    base = yaml.safe_dump(params, sort_keys=False).encode("utf-8")
    path = tmp_path / "params.yaml"
    for k in range(n):
        data = mutate(base, rng)
        path.write_bytes(data)
        try:
            old = signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, PER_INPUT_S)
            try:
                loaded = load_params(path)
                build_adapters(loaded)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
        except PipelineError as exc:
            assert "\n" not in str(exc) and len(str(exc)) <= 1000
        except Exception as exc:
            raise AssertionError(f"params input {k} (seed {SEED}): {type(exc).__name__}: {str(exc)[:300]}\n"
                                 f"{data[:300]!r}") from exc
    return n
