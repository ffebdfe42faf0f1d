"""Kill/resume: real ``derm1m dedup`` and ``derm1m shard`` processes killed with SIGKILL.

A killed stage must leave its previous outputs byte-identical (or, killed after its commit
point, the complete new outputs, never a mixture), leave nothing that breaks the next run, and
the rerun must resume from the chunks/tars the killed run completed and end byte-identical to
an uninterrupted run. Kill points: exact ones through ``DERM1M_KILL_AT`` (pipeline.faults: the
process SIGKILLs itself there), one from outside after polling for the first saved chunk, and
one after a random delay seeded here.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, small_params

from pipeline.faults import KILL_ENV
from pipeline.tables import OUTPUT_MARKER, Publication, atomic_dir, recover_publication, write_json

HASH_CHUNK = 16          # images per saved hash chunk: ~10 chunks on the test corpus
SHARD_SIZE = 10          # samples per tar: several tars per split


# --- the commit protocol itself (fast, in-process plus one tiny killed subprocess) -----------


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones included, the output marker aside) by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != OUTPUT_MARKER}


def _killed_publish(tmp_path: Path, point: str) -> subprocess.CompletedProcess:
    """A subprocess that publishes a new ``out`` folder and is killed at ``point``."""
    code = ("import sys; from pathlib import Path; from pipeline.tables import atomic_dir\n"
            "with atomic_dir(Path(sys.argv[1]) / 'out') as tmp:\n"
            "    (tmp / 'a.txt').write_text('new a'); (tmp / 'b.txt').write_text('new b')\n")
    env = {**os.environ, KILL_ENV: point, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, timeout=60)


@pytest.mark.parametrize("point, expect", [("publish_before_journal", "old"), ("publish_after_journal", "old"),
                                           ("publish_mid_swap", "new")])
def test_killed_publication_leaves_old_or_new_and_the_next_run_finishes_it(tmp_path: Path, point: str,
                                                                           expect: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / OUTPUT_MARKER).write_text("a previous output")
    (out / "a.txt").write_text("old a")
    (out / "b.txt").write_text("old b")
    done = _killed_publish(tmp_path, point)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert _snapshot(out) == {"a.txt": f"{expect} a".encode(), "b.txt": f"{expect} b".encode()}
    journal = tmp_path / ".out.commit.json"
    assert journal.exists() == (point != "publish_before_journal")
    recover_publication(journal)   # what the next run of the stage does first
    final = "new" if point != "publish_before_journal" else "old"
    assert _snapshot(out) == {"a.txt": f"{final} a".encode(), "b.txt": f"{final} b".encode()}
    with atomic_dir(out) as tmp:    # the next run: stale temporaries of the killed one go
        (tmp / "c.txt").write_text("c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert _snapshot(out) == {"c.txt": b"c"}


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / ".metrics.json.999999999.abc.tmp"        # no such pid
    other = tmp_path / ".rejects.parquet.999999999.x_1.tmp"     # another output's, also dead
    live = tmp_path / f".metrics.json.{os.getppid()}.abc.tmp"   # a running process's
    mine = tmp_path / ".notes.tmp"                              # not a temporary of ours
    for p in (dead, other, live, mine):
        p.write_text("half")
    (tmp_path / ".dead.parquet.999999999.x.tmp").mkdir()          # a killed atomic_dir's folder
    write_json({"a": 1}, tmp_path / "metrics.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, mine.name, "metrics.json"])


def test_failed_block_publishes_nothing_and_keeps_a_partial_folder(tmp_path: Path) -> None:
    (tmp_path / "out.txt").write_text("old")
    with pytest.raises(RuntimeError), Publication(tmp_path / ".j.json") as pub:
        pub.file(tmp_path / "out.txt").write_text("new")
        (pub.directory(tmp_path / "shards", partial=True) / "x.tar").write_text("tar")
        raise RuntimeError("stage failed")
    assert (tmp_path / "out.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".shards.partial", "out.txt"]


# --- real stages, real SIGKILLs ------------------------------------------------------------


def _env(kill_at: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "TQDM_DISABLE": "1"}
    env.pop(KILL_ENV, None)
    if kill_at:
        env[KILL_ENV] = kill_at
    return env


def _cmd(stage: str, params: Path, *sets: str) -> list[str]:
    return [shutil.which("derm1m", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
            or "derm1m", stage, "--params", str(params), *[a for s in sets for a in ("--set", s)]]


def _run(stage: str, params: Path, *sets: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(_cmd(stage, params, *sets), cwd=REPO, env=_env(kill_at), capture_output=True,
                          text=True, timeout=300)
    if kill_at:
        assert done.returncode == -signal.SIGKILL, f"{stage} was not killed at {kill_at}:\n{done.stderr[-2000:]}"
    else:
        assert done.returncode == 0, f"{stage} failed:\n{done.stderr[-3000:]}"
    return done


def _outputs(root: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The stage's outputs (visible files only: what DVC hashes)."""
    snap = {}
    for name in names:
        path = root / name
        items = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        snap |= {str(p.relative_to(root)): p.read_bytes() for p in items
                 if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}
    return snap


def _hidden(folder: Path) -> list[str]:
    """Hidden leftovers (temporaries, journals) in ``folder``; the output marker is not one."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != OUTPUT_MARKER) \
        if folder.is_dir() else []


@pytest.fixture(scope="module")
def stage_root(corpus: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The corpus's tables in a fresh root, and a params file with small resume chunks and tars."""
    root = tmp_path_factory.mktemp("resume")
    shutil.copytree(corpus["root"] / "data", root / "data", ignore=shutil.ignore_patterns("dedup", "metadata"))
    params = small_params(root)
    for stage in ("ingest", "annotate", "truncate", "split"):   # read the copied tables
        params[stage]["out"] = str(root / f"data/{stage}")
    params["resume"] = {"dir": "auto", "hash_chunk": HASH_CHUNK}
    params["shard"]["max_samples_per_shard"] = SHARD_SIZE
    params["executor"]["workers"] = 1   # keep kills in one process tree
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return root, path


@pytest.mark.slow
def test_dedup_and_shard_survive_sigkill_and_resume(stage_root: tuple[Path, Path]) -> None:
    root, params = stage_root
    dedup_out, area = ("data/dedup",), root / "data/.resume/dedup"
    shard_out = ("shards/train", "shards/validation", "shards/holdout", "shards/manifest.parquet",
                 "shards/rejects.parquet")
    # Uninterrupted reference runs, then "previous" outputs that differ from them.
    started = time.perf_counter()
    _run("dedup", params)
    dedup_seconds = time.perf_counter() - started
    ref_dedup = _outputs(root, dedup_out)
    _run("shard", params)
    ref_shard = _outputs(root, shard_out)
    assert len([n for n in ref_shard if n.startswith("shards/train/") and n.endswith(".tar")]) >= 4
    _run("shard", params, "shard.jpeg_quality=80", "shard.captions=cluster")
    old_shard = _outputs(root, shard_out)
    _run("dedup", params, "dedup.radius=3")
    old_dedup = _outputs(root, dedup_out)
    assert old_dedup != ref_dedup and old_shard != ref_shard
    n_chunks = -(-len(_distinct_images(root)) // HASH_CHUNK)
    assert n_chunks >= 4

    # dedup: killed after the 1st saved chunk, after three more (resuming the 1st), after all tables
    # are written but before the commit, after the commit journal is written.
    for point in ("dedup_hash_chunk_saved:1", "dedup_hash_chunk_saved:3", "dedup_before_publish",
                  "publish_after_journal"):
        _run("dedup", params, kill_at=point)
        assert _outputs(root, dedup_out) == old_dedup, point
        assert area.is_dir() and len(list(area.glob("*.json"))) >= 1
    # Killed from outside as soon as a chunk is saved (the journal of the last kill is finished
    # first, so the outputs may be the new ones from then on, never a mixture).
    shutil.rmtree(area)
    proc = subprocess.Popen(_cmd("dedup", params), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while proc.poll() is None and not any(area.glob("*.json")):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert _outputs(root, dedup_out) in (old_dedup, ref_dedup)
    # And after a random delay (seeded: the same delay every run of this test).
    delay = random.Random(20250314).uniform(0.2, 1.0) * dedup_seconds
    proc = subprocess.Popen(_cmd("dedup", params), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert _outputs(root, dedup_out) in (old_dedup, ref_dedup)
    # From a clean resume area, a kill after two saved chunks; the rerun resumes exactly those
    # and matches the uninterrupted run.
    shutil.rmtree(area, ignore_errors=True)
    _run("dedup", params, kill_at="dedup_hash_chunk_saved:2")
    done = _run("dedup", params)
    assert f"resumed 2 of {n_chunks} hash chunks from an interrupted run" in done.stderr, done.stderr
    assert _outputs(root, dedup_out) == ref_dedup
    assert not area.exists() and not (root / "data/.resume").exists()
    assert _hidden(root / "data") == [] and _hidden(root / "data/dedup") == []

    # shard: killed after 2 train tars, again after 5 (2 resumed + 3 new), before the commit.
    for point in ("shard_tar_done:2", "shard_tar_done:5", "shard_before_publish"):
        _run("shard", params, kill_at=point)
        assert _outputs(root, shard_out) == old_shard, point
    assert (root / "shards/.train.resume").is_dir() or (root / "shards/.train.partial").is_dir()
    proc = subprocess.Popen(_cmd("shard", params), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(random.Random(7).uniform(0.5, 2.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert _outputs(root, shard_out) in (old_shard, ref_shard)
    if _outputs(root, shard_out) == ref_shard:   # the random kill came too late to leave work behind
        _run("shard", params, "shard.jpeg_quality=80", "shard.captions=cluster")
        _run("shard", params, kill_at="shard_tar_done:3")
    done = _run("shard", params)
    assert re.search(r"resumed [1-9]\d* of \d+ train tars from an interrupted run", done.stderr), done.stderr
    assert _outputs(root, shard_out) == ref_shard
    assert _hidden(root / "shards") == []


def _distinct_images(root: Path) -> list[str]:
    import pandas as pd

    return pd.read_parquet(root / "data/ingest/images.parquet")["sha256"].unique().tolist()
