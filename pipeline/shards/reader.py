"""Read the shards back: caption choice for multi-caption samples and a plain training loader.

Why here and not only in open_clip: open_clip's webdataset pipeline always reads ``txt``; a
sample written with ``shard.captions: cluster`` also carries ``txt.1``, ``txt.2``, ... and a
custom loader (or the loader benchmark) uses :func:`pick_caption` to show a different caption
of the same image each epoch, deterministically from (key, epoch, seed). :func:`pick_text` does
the same over the captions and their enriched variants (``ontology.txt``, ``concept.txt``, ...
from ``shard.text_variants``), Derm1M-style caption augmentation.
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
_VARIANT = re.compile(r"^([a-z]+)\.txt(?:\.(\d+))?$")


def caption_members(sample: dict) -> list[str]:
    """The sample's caption member names in order: ``txt``, ``txt.1``, ``txt.2``, ..."""
    found = [(int(m[1] or 0), k) for k in sample if (m := _TXT.match(k))]
    return [k for _, k in sorted(found)]


def variant_members(sample: dict, names: Sequence[str] | None = None) -> list[str]:
    """The sample's non-empty enriched-caption members (``ontology.txt``, ``concept.txt.1``, ...),
    by caption index then name; ``names`` keeps only those variants (e.g. ``["ontology"]``).
    The writer stores a pair without a variant as an empty member, which is skipped here."""
    found = [(int(m[2] or 0), m[1], k) for k in sample if (m := _VARIANT.match(k))
             and (names is None or m[1] in names) and sample[k]]
    return [k for *_, k in sorted(found)]


def _choose(sample: dict, members: list[str], epoch: int, seed: int) -> dict:
    if len(members) <= 1:
        return sample
    digest = hashlib.sha256(f"{sample['__key__']}|{epoch}|{seed}".encode()).digest()
    chosen = members[int.from_bytes(digest[:8], "big") % len(members)]
    return {**sample, "txt": sample[chosen]}


def pick_text(sample: dict, epoch: int, seed: int = 0, variants: Sequence[str] | None = None) -> dict:
    """Return the sample with ``txt`` set to one of its captions or enriched variants, chosen by
    (key, epoch, seed) like :func:`pick_caption`; ``variants`` limits which variants take part
    (None: all present, ``[]``: none, i.e. :func:`pick_caption`)."""
    return _choose(sample, caption_members(sample) + variant_members(sample, variants), epoch, seed)


def pick_caption(sample: dict, epoch: int, seed: int = 0) -> dict:
    """Return the sample with ``txt`` set to one of its captions, chosen by (key, epoch, seed).

    A hash, not a RNG, so the choice is the same in every dataloader worker and on every rerun.
    """
    return _choose(sample, caption_members(sample), epoch, seed)


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
