"""Train DermLIP with open_clip_train: build its argv from a profile and run it.

Why a wrapper instead of calling ``python -m open_clip_train.main`` from DVC: the trainer must
see our model configs (``derm1m-tiny``), it refuses to reuse a run folder that DVC owns, it asserts
``shards >= workers * GPUs``, and on CPU-only machines it needs ``--device cpu``. Doing those
here keeps the DVC stage a one-liner and the argv reproducible (logged in ``params.txt``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path

import braceexpand
import torch

from pipeline.errors import PipelineError
from pipeline.tables import Publication, atomic_path
from pipeline.training.launch import run_open_clip
from pipeline.training.pretrained import HF_HUB, resolve_weights
from pipeline.training.shardset import shard_pattern

__all__ = [
    "PRECISIONS",
    "build_train_args",
    "check_profile_inputs",
    "checkpoint_path",
    "run_training",
    "shard_pattern",
]

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "amp", "amp_bf16")
PANDERM_KEYS = ("vision_checkpoint", "text_encoder")
_NUMBER = (int, float)
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "model": str,
    "epochs": int,
    "batch_size": int,
    "lr": _NUMBER,
    "wd": _NUMBER,
    "warmup": int,
    "workers": int,
    "precision": str,
    "local_loss": bool,
    "gather_with_grad": bool,
    "grad_checkpointing": bool,
    "seed": int,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "max_train_samples": int,
    "train_num_samples": int,
    "beta1": _NUMBER,
    "beta2": _NUMBER,
    "eps": _NUMBER,
    "grad_clip_norm": _NUMBER,
    "log_every_n_steps": int,
    "device": str,
    "gpus": int,
    "vision_checkpoint": str,
    "text_encoder": str,
    "vision_model": str,
    "context_length": int,
    "embed_dim": int,
    "image_size": int,
    "pretrained": str,
    "deterministic": bool,
    "threads": int,
    "aug_cfg": dict,
    "dataset_resampled": bool,
}
# open_clip's AugmentationCfg fields: what ``aug_cfg`` may set (a typo fails before the trainer).
AUG_KEYS = ("scale", "ratio", "color_jitter", "re_prob", "re_count", "use_timm", "color_jitter_prob",
            "gray_scale_prob")
# Beside the staged run folder: the argv it was started with, so a rerun knows it may resume it.
RUN_ARGV = "{name}.argv.json"
# A partial run is built here (under the logs folder) and swapped into place when complete.
PARTIAL_DIR = ".partial"
# open_clip's log prefix and per-step timings: what makes two identical runs' out.log differ.
_LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\d,\d\d:\d\d:\d\d \| ", re.MULTILINE)
_STEP_TIMING = re.compile(r"Data \(t\): [\d.]+ Batch \(t\): [\d.]+, [\d.]+/s, [\d.]+/s/gpu ")


def _check_type(key: str, value: object, kind: type | tuple[type, ...]) -> None:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    bool_for_number = isinstance(value, bool) and bool not in kinds
    if bool_for_number or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise PipelineError(f"training profile: {key} must be {names}, got {value!r}")


def _validate_profile(profile: dict) -> None:
    """Check the keys the argv needs, so a typo fails here and not inside the trainer."""
    for key, kind in _REQUIRED.items():
        if key not in profile:
            raise PipelineError(f"training profile: missing key {key!r} (see params.yaml 'train')")
        _check_type(key, profile[key], kind)
    for key, kind in _OPTIONAL.items():
        if profile.get(key) is not None:
            _check_type(key, profile[key], kind)
    if profile["precision"] not in PRECISIONS:
        raise PipelineError(
            f"training profile: precision {profile['precision']!r} is not one of {PRECISIONS}"
        )
    for key in ("epochs", "batch_size"):
        if profile[key] < 1:
            raise PipelineError(f"training profile: {key} must be >= 1, got {profile[key]}")
    if profile["workers"] < 0:
        raise PipelineError(f"training profile: workers must be >= 0, got {profile['workers']}")
    if profile.get("threads") is not None and profile["threads"] < 1:
        raise PipelineError(f"training profile: threads must be >= 1, got {profile['threads']}")
    unknown = sorted(set(profile.get("aug_cfg") or {}) - set(AUG_KEYS))
    if unknown:
        raise PipelineError(f"training profile: aug_cfg key(s) {unknown} unknown; open_clip takes {list(AUG_KEYS)}")


def _aug_value(value: object) -> str:
    """One ``aug_cfg`` value as open_clip's ``--aug-cfg k=v`` parser reads it (``ast.literal_eval``).

    YAML lists become tuples, as in the seed's ``scale='(0.4, 1.0)'``.
    """
    if isinstance(value, list | tuple):
        return "(" + ", ".join(repr(v) for v in value) + ")"
    return repr(value) if not isinstance(value, str) else value


def aug_cfg_args(aug_cfg: dict | None) -> list[str]:
    """``--aug-cfg k=v ...`` in the profile's key order (empty when there is none)."""
    if not aug_cfg:
        return []
    return ["--aug-cfg", *(f"{k}={_aug_value(v)}" for k, v in aug_cfg.items())]


def is_panderm_profile(profile: dict) -> bool:
    """A profile is PanDerm's when it names a vision checkpoint or text encoder (or the name)."""
    return profile.get("name") == "dermlip-panderm" or any(k in profile for k in PANDERM_KEYS)


def check_profile_inputs(profile: dict) -> None:
    """Validate a training profile, including the local files a PanDerm profile points to.

    Why paths only: this pipeline never downloads weights, so the PanDerm vision checkpoint and
    the text encoder must already be on disk; a missing one is the user's to fix, said up front
    instead of after the data stages ran.
    """
    _validate_profile(profile)
    if not is_panderm_profile(profile):  # PanDerm's model config is generated and its init built later
        resolve_weights(profile["model"], profile.get("pretrained"))
        return
    for key in PANDERM_KEYS:
        value = profile.get(key)
        if not value or not isinstance(value, str | os.PathLike):
            raise PipelineError(
                f"training profile dermlip-panderm: set {key} to a local path "
                "(weights are never downloaded by this pipeline)"
            )
        if not Path(value).exists():
            raise PipelineError(
                f"training profile dermlip-panderm: {key} {str(value)!r} does not exist locally; "
                "download it yourself and point the profile at the file/folder"
            )


def _device(profile: dict) -> str:
    return profile.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")


def build_train_args(
    train_pattern: str,
    num_samples: int,
    profile: dict,
    logs_dir: Path,
    name: str,
    val_pattern: str | None = None,
    val_num_samples: int | None = None,
    *,
    world_size: int = 1,
) -> list[str]:
    """Return the argv for ``open_clip_train.main.main``: webdataset input, no downloaded weights.

    ``--train-num-samples`` is always explicit (``min(num_samples, max_train_samples)``, or the
    profile's ``train_num_samples``) so a smoke run is bounded and epochs never depend on
    open_clip re-reading ``sizes.json``.
    ImageNet zero-shot is off (no ``--imagenet-val``, ``--zeroshot-frequency 0``). ``workers``
    is capped at ``shards // world_size`` because the trainer asserts it.
    """
    _validate_profile(profile)
    n_shards = len(list(braceexpand.braceexpand(train_pattern)))
    if n_shards < world_size:
        raise PipelineError(
            f"{n_shards} training shard(s) cannot feed {world_size} processes; "
            "write more shards (smaller shard size) or use fewer GPUs"
        )
    workers = min(profile["workers"], n_shards // world_size)
    if workers < profile["workers"]:
        log.warning(
            "workers %d -> %d: open_clip needs at least one shard per dataloader worker",
            profile["workers"],
            workers,
        )
    max_samples = profile.get("max_train_samples")
    train_samples = min(num_samples, max_samples) if max_samples else num_samples
    if profile.get("train_num_samples"):
        # An explicit epoch length: beyond the shards' count open_clip cycles through them again,
        # which bounds a throughput check by steps instead of by the size of the corpus.
        train_samples = profile["train_num_samples"]
    model, pretrained = profile["model"], profile.get("pretrained") or None
    if pretrained and pretrained.startswith(HF_HUB):  # a hub repo carries its config and weights
        model, pretrained = pretrained, None
    argv = [
        "--dataset-type", "webdataset",
        "--train-data", train_pattern,
        "--train-num-samples", str(train_samples),
    ]
    if val_pattern is not None:
        argv += ["--val-data", val_pattern]
        if val_num_samples is not None:
            argv += ["--val-num-samples", str(val_num_samples)]
    argv += [
        "--model", model,
        "--epochs", str(profile["epochs"]),
        "--batch-size", str(profile["batch_size"]),
        "--lr", str(profile["lr"]),
        "--wd", str(profile["wd"]),
        "--warmup", str(profile["warmup"]),
        "--workers", str(workers),
        "--precision", profile["precision"],
        "--seed", str(profile["seed"]),
        "--device", _device(profile),
        "--save-frequency", "1",
        "--zeroshot-frequency", "0",
        "--report-to", "",
        "--log-every-n-steps", str(profile.get("log_every_n_steps") or 100),
        "--logs", str(logs_dir),
        "--name", name,
    ]  # fmt: skip
    if pretrained:
        argv += ["--pretrained", str(pretrained)]
    argv += aug_cfg_args(profile.get("aug_cfg"))
    if profile.get("dataset_resampled"):
        argv.append("--dataset-resampled")
    for key in ("beta1", "beta2", "eps", "grad_clip_norm"):
        if profile.get(key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(profile[key])]
    for key in ("local_loss", "gather_with_grad", "grad_checkpointing"):
        if profile[key]:
            argv.append(f"--{key.replace('_', '-')}")
    return argv


def checkpoint_path(logs_dir: Path, name: str, epochs: int) -> Path:
    """Where open_clip_train writes the final checkpoint of run ``name``."""
    return Path(logs_dir) / name / "checkpoints" / f"epoch_{epochs}.pt"


def _check_run_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise PipelineError(f"training run name {name!r} must be a plain folder name")


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _run_in_process(argv: list[str]) -> None:
    if run_open_clip(argv) != 0:
        raise PipelineError("open_clip_train refused to start (see its message above)")


def _run_torchrun(argv: list[str], nproc_per_node: int) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_repo_root()), env.get("PYTHONPATH")]))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", str(nproc_per_node),
        "-m", "pipeline.training.launch", json.dumps(argv),
    ]  # fmt: skip
    log.info("launching: %s", " ".join(cmd))
    done = subprocess.run(cmd, env=env, check=False)
    if done.returncode != 0:
        raise PipelineError(f"torchrun training failed with exit status {done.returncode}")


def run_training(
    train_dir: Path,
    profile: dict,
    logs_dir: Path,
    name: str,
    val_dir: Path | None = None,
    nproc_per_node: int = 1,
    use_torchrun: bool | None = None,
) -> Path:
    """Train on the shards in ``train_dir`` and return ``<logs>/<name>/checkpoints/epoch_<N>.pt``.

    One process runs in-process; ``nproc_per_node > 1`` (or ``use_torchrun=True``) runs
    ``python -m torch.distributed.run --standalone -m pipeline.training.launch`` (DDP over
    nccl). Multi-process needs GPUs: open_clip_train hands ``device_ids=[cpu]`` to
    DistributedDataParallel, which rejects it. The run is staged in ``<logs>/.partial/<name>``
    and swapped into ``<logs>/<name>`` when complete. A staged run that was killed after writing
    an epoch checkpoint, started with the same argv, is resumed (``--resume latest``: model,
    optimiser and scaler state, from the next epoch); any other leftover is deleted (open_clip
    refuses to reuse a run folder). A PanDerm profile first
    builds ``<logs>/<name>-init.pt`` (see ``panderm``) and starts from it.
    """
    check_profile_inputs(profile)
    _check_run_name(name)
    if nproc_per_node < 1:
        raise PipelineError(f"nproc_per_node must be >= 1, got {nproc_per_node}")
    if nproc_per_node > 1 and use_torchrun is False:
        raise PipelineError("nproc_per_node > 1 runs under torchrun; drop use_torchrun=False")
    if nproc_per_node > 1 and _device(profile) == "cpu":
        raise PipelineError(
            f"nproc_per_node={nproc_per_node} needs GPUs: open_clip_train's DDP does not run on "
            "CPU; use nproc_per_node=1"
        )
    train_pattern, n_train = shard_pattern(Path(train_dir))
    val_pattern, n_val = shard_pattern(Path(val_dir)) if val_dir is not None else (None, None)
    logs_dir = Path(logs_dir)
    # open_clip writes <logs>/<name> as it goes; it runs under <logs>/.partial and is swapped
    # into place complete, so a killed run leaves the previous run folder intact.
    staging = logs_dir / PARTIAL_DIR
    argv = build_train_args(
        train_pattern, n_train, profile, staging, name, val_pattern, n_val,
        world_size=nproc_per_node,
    )  # fmt: skip
    run_dir = logs_dir / name
    if is_panderm_profile(profile):
        from pipeline.training.panderm import build_initial_checkpoint

        init = build_initial_checkpoint(profile, logs_dir, name)
        argv += ["--pretrained", str(init)]
    stamp = staging / RUN_ARGV.format(name=name)
    if resumable(staging / name, stamp, argv):
        log.info("resuming the interrupted run %s from its latest checkpoint", staging / name)
        argv += ["--resume", "latest"]
    else:
        if (staging / name).exists():
            log.info("removing an interrupted run %s (no checkpoint of the same argv to resume)", staging / name)
            shutil.rmtree(staging / name)
        staging.mkdir(parents=True, exist_ok=True)
        with atomic_path(stamp) as tmp:
            tmp.write_text(json.dumps(argv, indent=1) + "\n", encoding="utf-8")
    if use_torchrun or (use_torchrun is None and nproc_per_node > 1):
        _run_torchrun(argv, nproc_per_node)
    else:
        with deterministic_training(profile):
            _run_in_process(argv)
    staged = checkpoint_path(staging, name, profile["epochs"])
    if not staged.is_file():
        raise PipelineError(f"training ended without writing {staged}; see {staging / name / 'out.log'}")
    _tidy_run_files(staging / name, staging, logs_dir, bool(profile.get("deterministic")))
    stamp.unlink(missing_ok=True)
    with Publication(logs_dir / f".{name}.commit.json") as pub:
        slot = pub.directory(run_dir)
        slot.rmdir()
        os.replace(staging / name, slot)
    if not any(staging.iterdir()):
        staging.rmdir()
    final = checkpoint_path(logs_dir, name, profile["epochs"])
    return final


def resumable(run_dir: Path, stamp: Path, argv: list[str]) -> bool:
    """True when ``run_dir`` is a killed run of exactly ``argv`` that left an epoch checkpoint.

    Why the argv check: open_clip's ``--resume latest`` takes whatever checkpoint is there; after
    a params change (another lr, more samples) resuming would mix two recipes in one model, so
    only an identical command resumes and anything else starts over.
    """
    if not run_dir.is_dir() or not stamp.is_file():
        return False
    try:
        if json.loads(stamp.read_text(encoding="utf-8")) != argv:
            return False
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return drop_incomplete_checkpoints(run_dir / "checkpoints") > 0


def _epoch(path: Path) -> int:
    match = re.fullmatch(r"epoch_(\d+)\.pt", path.name)
    return int(match[1]) if match else -1


def drop_incomplete_checkpoints(folder: Path) -> int:
    """Delete checkpoints a kill cut short; return how many whole epoch checkpoints remain.

    Why: open_clip writes ``epoch_N.pt`` in place, so a kill during the write leaves half a
    file, and ``--resume latest`` would pick it and die in ``torch.load``. A torch checkpoint
    is a zip whose central directory is written last: a file without one is incomplete.
    """
    whole = 0
    for path in sorted(folder.glob("*.pt"), key=_epoch) if folder.is_dir() else []:
        try:
            with zipfile.ZipFile(path):
                pass
        except (OSError, zipfile.BadZipFile):
            log.warning("%s is incomplete (killed while writing it); deleting it", path)
            path.unlink()
            continue
        whole += _epoch(path) >= 0
    return whole


@contextmanager
def deterministic_training(profile: dict):
    """Make an in-process CPU run bit-reproducible when the profile says ``deterministic: true``.

    Three things made two identical smoke runs differ: open_clip's sample shuffle buffer
    (``wds.shuffle``) is seeded from the pid and the clock, not from ``--seed``; float sums
    depend on the number of intra-op threads (a 2-thread run differs from a 1-thread run);
    and a few kernels have nondeterministic implementations. So the shuffle gets a
    ``random.Random(seed)``, torch runs ``threads`` (default 1) intra-op threads with
    deterministic algorithms, and everything is restored afterwards. GPU profiles leave it off:
    they want the fastest kernels, and bitwise equality across GPUs is not on offer anyway; the
    smoke profile on a GPU machine (``device: auto``) still runs, with deterministic kernels
    where CUDA has them (a missing one is a warning, not an error).
    """
    if not profile.get("deterministic"):
        yield
        return
    import webdataset as wds

    seed = int(profile["seed"])
    shuffle = wds.shuffle
    threads = torch.get_num_threads()
    was_deterministic = torch.are_deterministic_algorithms_enabled()

    def seeded_shuffle(*args: object, **kwargs: object) -> object:
        kwargs.setdefault("rng", random.Random(seed))
        return shuffle(*args, **kwargs)

    wds.shuffle = seeded_shuffle
    torch.set_num_threads(int(profile.get("threads") or 1))
    on_cpu = _device(profile) == "cpu"
    if not on_cpu:   # cuBLAS is deterministic only with this workspace setting, read at its start
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # On a GPU an op without a deterministic kernel warns instead of stopping the run.
    torch.use_deterministic_algorithms(True, warn_only=not on_cpu)
    try:
        yield
    finally:
        wds.shuffle = shuffle
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(was_deterministic)


def _tidy_run_files(run_dir: Path, staging: Path, logs_dir: Path, deterministic: bool) -> None:
    """Point ``params.txt``/``out.log`` at the final folder; drop the clock from a deterministic log.

    The files name the staging folder open_clip ran in; after the swap that is wrong, and it
    would differ from a run that was never staged. A deterministic profile's ``out.log`` loses
    its timestamps and per-step timings (they are printed on the console as the run goes), so
    the whole run folder is byte-identical between two runs.
    """
    for name in ("params.txt", "out.log"):
        path = run_dir / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8").replace(str(staging), str(logs_dir))
        if deterministic and name == "out.log":
            text = _STEP_TIMING.sub("", _LOG_TIME.sub("", text))
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
