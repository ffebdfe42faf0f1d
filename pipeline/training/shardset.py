"""Describe one split folder of WebDataset shards: its tar files, sample count and brace pattern.

Why: open_clip_train takes ``--train-data`` as one brace pattern plus ``--train-num-samples``;
deriving both from the folder and its ``sizes.json`` (written next to the tars by the shards
stage) keeps the trainer, the evaluator and DVC looking at exactly the same files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.errors import PipelineError

SIZES_FILE = "sizes.json"
_NUMBERED = re.compile(r"^(?P<prefix>.+)-(?P<num>\d+)\.tar$")
_BRACE_CHARS = set("{},")


def list_shards(split_dir: Path) -> tuple[list[Path], dict[str, int]]:
    """Return the split's tar files (sorted) and their sample counts from ``sizes.json``.

    Raises ``PipelineError`` when the folder, the tars or ``sizes.json`` are missing, when
    ``sizes.json`` does not cover every tar (stale shards), or when the split holds no samples.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise PipelineError(f"{split_dir}: no such shard folder; run the shards stage first")
    tars = sorted(split_dir.glob("*.tar"))
    if not tars:
        raise PipelineError(f"{split_dir}: no .tar shards; run the shards stage first")
    sizes_path = split_dir / SIZES_FILE
    if not sizes_path.is_file():
        raise PipelineError(
            f"{sizes_path}: missing; the shards stage writes it next to the tars, rerun it"
        )
    try:
        sizes = json.loads(sizes_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{sizes_path}: not valid JSON ({exc}); rerun the shards stage") from None
    if not isinstance(sizes, dict):
        raise PipelineError(f"{sizes_path}: expected an object of tar name -> sample count")
    missing = [t.name for t in tars if t.name not in sizes]
    if missing:
        raise PipelineError(
            f"{sizes_path}: no count for {', '.join(missing[:3])}; sizes.json is stale, "
            "rerun the shards stage"
        )
    counts = {t.name: int(sizes[t.name]) for t in tars}
    if sum(counts.values()) <= 0:
        raise PipelineError(f"{split_dir}: the shards hold no samples (sizes.json sums to 0)")
    return tars, counts


def brace_pattern(tars: list[Path]) -> str:
    """Compress tar paths of one folder into a brace pattern that braceexpand turns back into them.

    Contiguous ``<prefix>-NNNNNN.tar`` runs become ``<prefix>-{000000..000003}.tar``; gaps or mixed
    names fall back to an explicit ``{a,b,c}`` list so the pattern never names a file that is not
    there.
    """
    if not tars:
        raise PipelineError("no shards to describe")
    folder = tars[0].parent
    names = [t.name for t in tars]
    if any(t.parent != folder for t in tars) or any(_BRACE_CHARS & set(n) for n in names):
        raise PipelineError(f"{folder}: shard names must be plain files of one folder: {names[:3]}")
    if len(names) == 1:
        return str(folder / names[0])
    matches = [_NUMBERED.match(n) for n in names]
    if all(matches):
        prefixes = {m["prefix"] for m in matches}
        widths = {len(m["num"]) for m in matches}
        nums = [m["num"] for m in matches]
        if len(prefixes) == 1 and len(widths) == 1:
            prefix = prefixes.pop()
            values = [int(n) for n in nums]
            if values == list(range(values[0], values[0] + len(values))):
                return str(folder / f"{prefix}-{{{nums[0]}..{nums[-1]}}}.tar")
            return str(folder / f"{prefix}-{{{','.join(nums)}}}.tar")
    return str(folder / f"{{{','.join(names)}}}")


def shard_pattern(split_dir: Path) -> tuple[str, int]:
    """Return the brace pattern of the tars in ``split_dir`` and their total sample count."""
    tars, counts = list_shards(split_dir)
    return brace_pattern(tars), sum(counts.values())
