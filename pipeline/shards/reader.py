"""Read the shards back: caption choice for multi-caption samples and a plain training loader.

Why here and not only in open_clip: open_clip's webdataset pipeline always reads ``txt``; a
sample written with ``shard.captions: cluster`` also carries ``txt.1``, ``txt.2``, ... and a
custom loader (or the loader benchmark) uses :func:`pick_caption` to show a different caption
of the same image each epoch, deterministically from (key, epoch, seed).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Sequence

import torch
import webdataset as wds
from PIL import Image

_TXT = re.compile(r"^txt(?:\.(\d+))?$")


def caption_members(sample: dict) -> list[str]:
    """The sample's caption member names in order: ``txt``, ``txt.1``, ``txt.2``, ..."""
    found = [(int(m[1] or 0), k) for k in sample if (m := _TXT.match(k))]
    return [k for _, k in sorted(found)]


def pick_caption(sample: dict, epoch: int, seed: int = 0) -> dict:
    """Return the sample with ``txt`` set to one of its captions, chosen by (key, epoch, seed).

    A hash, not a RNG, so the choice is the same in every dataloader worker and on every rerun.
    """
    members = caption_members(sample)
    if len(members) <= 1:
        return sample
    digest = hashlib.sha256(f"{sample['__key__']}|{epoch}|{seed}".encode()).digest()
    chosen = members[int.from_bytes(digest[:8], "big") % len(members)]
    return {**sample, "txt": sample[chosen]}


def decode_rgb(data: bytes) -> Image.Image:
    """An RGB PIL image from JPEG bytes (the same decode a folder loader does from a file)."""
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def training_loader(urls: str | Sequence[str], transform: Callable, batch_size: int, workers: int,
                    epoch: int = 0, shuffle: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader of ``(image tensor, caption)`` batches from WebDataset tars.

    Shards are split across workers (each worker needs at least one tar); only ``jpg`` and
    ``txt`` are decoded, the image to RGB PIL and then passed through ``transform`` (e.g. open_clip's train transform: random resized crop
    to 224x224, normalise).
    """
    dataset = (wds.WebDataset(urls, shardshuffle=False, nodesplitter=wds.split_by_node)
               .map(lambda s: pick_caption(s, epoch))
               .to_tuple("jpg", "txt")  # before decoding: the json member is never parsed
               .map_tuple(lambda jpg: transform(decode_rgb(jpg)), lambda txt: txt.decode("utf-8")))
    if shuffle:
        dataset = dataset.shuffle(shuffle)
    return torch.utils.data.DataLoader(dataset.batched(batch_size), batch_size=None, num_workers=workers,
                                       persistent_workers=False)
