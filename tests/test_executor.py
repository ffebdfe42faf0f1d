"""The executor seam: serial, local and Dask executors give byte-identical tables and shards.

The cluster tests start a real ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1
(no dashboards, scratch files under the test's tmp dir) and stop every one of them by PID,
also when the test fails. One of them SIGKILLs a worker while a stage is running on it.
"""

from __future__ import annotations

import copy
import csv
import filecmp
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.errors import ConfigError, PipelineError
from pipeline.executor import SerialExecutor, executor_config, make_executor

DASK = Path(sys.executable).parent / "dask"
IMAGE_STAGES = ("ingest", "dedup", "shard")


def _with_executor(params: dict, out: Path, **executor: object) -> dict:
    """``params`` with its image stages writing under ``out`` and the given executor section."""
    p = copy.deepcopy(params)
    p["executor"] = {**p.get("executor", {}), **executor}
    p["ingest"]["out"] = str(out / "ingest")
    p["dedup"]["out"] = str(out / "dedup")
    p["shard"]["out"] = str(out / "shards")
    return p


def _run_image_stages(params: dict, stages: tuple[str, ...] = IMAGE_STAGES) -> None:
    """Run ingest, dedup and shard in-process (annotate/truncate/split outputs are reused: they
    depend only on tables that must come out byte-identical)."""
    import importlib

    for stage in stages:
        importlib.import_module(f"pipeline.stages.{stage}").run(params)


def _assert_same_tree(a: Path, b: Path) -> None:
    """Every file under ``a`` exists under ``b`` with the same bytes, and nothing else does."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    assert files_a
    different = [str(f) for f in files_a if not filecmp.cmp(a / f, b / f, shallow=False)]
    assert not different, f"differ between {a} and {b}: {different}"


def _assert_same_outputs(reference: dict, params: dict, stages: tuple[str, ...] = IMAGE_STAGES) -> None:
    for stage in stages:
        _assert_same_tree(Path(reference[stage]["out"]), Path(params[stage]["out"]))


# ---------------------------------------------------------------------------------------------
# params and errors


def test_executor_config_defaults_and_errors() -> None:
    assert executor_config({})["kind"] == "local"
    assert executor_config({"executor": {"kind": "serial"}})["kind"] == "serial"
    assert isinstance(make_executor({"executor": {"kind": "serial"}}), SerialExecutor)
    bad = [{"kind": "spark"}, {"workers": -1}, {"workers": True}, {"scheduler_address": ""},
           {"scheduler_address": "nowhere"}, {"connect_timeout": 0}, {"sheduler_address": "local"}]
    for section in bad:
        with pytest.raises(ConfigError, match="executor"):
            executor_config({"executor": section})


def _square(x: int) -> int:
    return x * x


def _pid(_: int) -> int:
    time.sleep(0.01)
    return os.getpid()


@pytest.mark.parametrize("kind", ["serial", "local"])
def test_imap_streams_in_input_order_on_one_pool(kind: str) -> None:
    """imap pulls a generator lazily and yields in input order; the local executor keeps one
    pool for all its calls (a pool per call forks the parent again each time)."""
    pulled: list[int] = []

    def items():
        for i in range(40):
            pulled.append(i)
            yield i

    with make_executor({"executor": {"kind": kind, "workers": 2}}) as ex:
        stream = ex.imap(_square, items())
        assert next(stream) == 0 and len(pulled) <= 5   # a few in flight, not the whole input
        assert list(stream) == [i * i for i in range(1, 40)]
        first, second = set(ex.imap(_pid, range(16))), set(ex.map(_pid, list(range(16))))
    if kind == "local":
        assert first == second and os.getpid() not in first and len(first) <= 2
    else:
        assert first == second == {os.getpid()}


def test_repository_params_select_the_local_pool() -> None:
    from conftest import repo_params

    cfg = executor_config(repo_params())
    assert cfg == {"kind": "local", "workers": 0, "scheduler_address": "local", "connect_timeout": 10}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_a_one_line_error(corpus: dict, tmp_path: Path) -> None:
    """The CLI path: exit 2 and one line naming the address, no traceback.

    Runs on the session corpus's demo source (a fresh clone has no data/demo of its own), with
    ingest writing under tmp_path so the shared corpus is never touched.
    """
    import yaml

    params = copy.deepcopy(corpus["params"])
    params["ingest"]["out"] = str(tmp_path / "ingest")
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params), encoding="utf-8")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "derm1m"), "ingest", "--params", str(params_file),
         "--set", "executor.kind=dask", "--set", f"executor.scheduler_address=tcp://127.0.0.1:{_free_port()}",
         "--set", "executor.connect_timeout=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TQDM_DISABLE": "1"})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "cannot reach a Dask scheduler" in lines[0], proc.stderr
    bad = subprocess.run(
        [str(Path(sys.executable).parent / "derm1m"), "ingest", "--params", str(params_file),
         "--set", "executor.kind=spark"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "executor.kind 'spark'" in bad.stderr and "Traceback" not in bad.stderr


# ---------------------------------------------------------------------------------------------
# identical outputs


def test_serial_and_local_executors_match_the_reference_build(corpus: dict, tmp_path: Path) -> None:
    """The session corpus was built with the default local pool (2 processes)."""
    ref = corpus["params"]
    for name, section in (("serial", {"kind": "serial"}), ("local1", {"kind": "local", "workers": 1})):
        params = _with_executor(ref, tmp_path / name, **section)
        _run_image_stages(params)
        _assert_same_outputs(ref, params)


def _ham_slice_params(shared: Path, root: Path, n: int = 48) -> dict:
    """params for the first ``n`` HAM10000 rows (read in place from shared storage, not copied)."""
    from conftest import small_params

    ham = shared / "corpus" / "ham10000"
    rows = list(csv.reader((ham / "HAM10000_metadata.csv").open(encoding="utf-8")))
    sliced = root / "ham_slice.csv"
    with sliced.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows[: n + 1])
    p = small_params(root)
    p["ingest"]["sources"] = [{"name": "ham10000", "adapter": "ham10000", "path": str(ham),
                               "metadata_csv": str(sliced)}]
    p["shard"]["max_samples_per_shard"] = 16
    return p


@pytest.mark.shared
def test_ham10000_slice_identical_across_executors(shared: Path, tmp_path: Path) -> None:
    """Real photographs: local pool (reference), serial, and a 2-worker Dask LocalCluster."""
    from pipeline.stages.order import stage_functions

    ref = _ham_slice_params(shared, tmp_path)
    ref["executor"] = {"kind": "local", "workers": 2}
    for name, fn in stage_functions(until="shard"):
        if name != "demo_corpus":
            fn(ref)
    assert len(list(Path(ref["shard"]["out"]).rglob("*.tar"))) > 1
    for name, section in (("serial", {"kind": "serial"}),
                          ("dask", {"kind": "dask", "workers": 2, "scheduler_address": "local"})):
        params = _with_executor(ref, tmp_path / name, **section)
        _run_image_stages(params)
        _assert_same_outputs(ref, params)


# ---------------------------------------------------------------------------------------------
# a real cluster: dask scheduler + dask worker processes on 127.0.0.1


class Cluster:
    """A scheduler and workers started as separate processes, known by PID."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.scheduler_file = root / "scheduler.json"
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.env = {**os.environ, "DASK_TEMPORARY_DIRECTORY": str(root / "tmp"),
                    "TQDM_DISABLE": "1"}

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        out = (self.root / log).open("w")
        return subprocess.Popen([str(DASK), *args], cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    @property
    def address(self) -> str:
        return json.loads(self.scheduler_file.read_text())["address"]

    def start(self, n_workers: int) -> None:
        self.scheduler = self._spawn(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                      "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(self.scheduler_file)], "scheduler.log")
        deadline = time.monotonic() + 60
        while not self.scheduler_file.exists():
            assert self.scheduler.poll() is None, (self.root / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "scheduler did not start"
            time.sleep(0.1)
        for i in range(n_workers):
            self.workers.append(self._spawn(
                ["worker", self.address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                 "--no-dashboard", "--dashboard-address", "127.0.0.1:0", "--name", f"w{i}", "--local-directory", str(self.root / "tmp")],
                f"worker{i}.log"))
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(n_workers, timeout=60)

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            if proc is not None:
                proc.wait(timeout=30)


@contextmanager
def dask_cluster(root: Path, n_workers: int = 2) -> Iterator[Cluster]:
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(root)
    try:
        cluster.start(n_workers)
        yield cluster
    finally:
        cluster.stop()


def test_real_cluster_matches_local_and_reports_unshared_inputs(corpus: dict, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ref = corpus["params"]
    with dask_cluster(tmp_path / "cluster") as cluster:
        params = _with_executor(ref, tmp_path / "dask", kind="dask", scheduler_address=cluster.address)
        _run_image_stages(params)
        _assert_same_outputs(ref, params)

        # A path the client can read but the workers cannot (relative to a working directory
        # they do not share): one clear error, not a table full of image_missing rejects.
        monkeypatch.chdir(Path(ref["demo"]["out"]).parent.parent)
        relative = _with_executor(ref, tmp_path / "relative", kind="dask", scheduler_address=cluster.address)
        relative["ingest"]["sources"] = [{**src, "path": os.path.relpath(src["path"])}
                                         for src in ref["ingest"]["sources"]]
        with pytest.raises(PipelineError, match=r"cannot read 'data/demo/.*storage every worker"):
            _run_image_stages(relative, ("ingest",))


def test_killing_a_worker_mid_stage_gives_identical_outputs(corpus: dict, tmp_path: Path) -> None:
    """SIGKILL the first worker seen running a task; the scheduler re-runs its tasks elsewhere."""
    from distributed import Client

    ref = corpus["params"]
    with dask_cluster(tmp_path / "cluster") as cluster:
        pids = {w.pid: w for w in cluster.workers}
        killed: list[int] = []
        stop = threading.Event()

        def kill_first_busy_worker() -> None:
            with Client(cluster.address, timeout=30) as watcher:
                pid_of = watcher.run(os.getpid)
                assert set(pid_of.values()) == set(pids)
                while not stop.is_set() and not killed:
                    busy = [addr for addr, keys in watcher.processing().items() if keys]
                    if busy:
                        pid = pid_of[busy[0]]
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                    time.sleep(0.005)

        params = _with_executor(ref, tmp_path / "dask", kind="dask", scheduler_address=cluster.address,
                                connect_timeout=30)
        watcher = threading.Thread(target=kill_first_busy_worker, daemon=True)
        watcher.start()
        try:
            _run_image_stages(params, ("ingest",))
        finally:
            stop.set()
            watcher.join(timeout=30)
        assert killed, "no worker was killed while the stage ran"
        assert pids[killed[0]].wait(timeout=30) == -signal.SIGKILL
        _run_image_stages(params, ("dedup", "shard"))
        _assert_same_outputs(ref, params)
        with Client(cluster.address, timeout=30) as client:
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == 1

