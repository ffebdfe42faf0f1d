"""Load a trained checkpoint and turn shard samples or image files into CLIP features.

Why separate from the metrics: encoding is the only part that needs the model and a device;
retrieval and zero-shot scoring then work on plain feature tensors and are unit-testable with
hand-made numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import open_clip
import torch
import webdataset as wds
from PIL import Image, UnidentifiedImageError

from pipeline.errors import PipelineError
from pipeline.training.configs import register_model_configs

log = logging.getLogger(__name__)

Preprocess = Callable[[Image.Image], torch.Tensor]


def load_model(
    checkpoint: Path, model_name: str, device: str
) -> tuple[torch.nn.Module, Preprocess, Callable]:
    """Build ``model_name`` with the weights of an open_clip_train checkpoint, in eval mode.

    open_clip accepts a local file as ``pretrained`` and unwraps the trainer's
    ``{"state_dict": ...}`` dict, stripping DDP's ``module.`` prefix. Returns the model, the
    *validation* transform (deterministic resize + centre crop) and the tokenizer.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise PipelineError(f"{checkpoint}: no such checkpoint; run the train stage first")
    register_model_configs()
    if ":" not in model_name and model_name not in open_clip.list_models():
        raise PipelineError(f"unknown model {model_name!r}; see open_clip.list_models()")
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=str(checkpoint), device=device
    )
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(model_name)


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last may be shorter), so inputs can stream."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def encode_images(
    model: torch.nn.Module,
    preprocess: Preprocess,
    images: Iterable[Image.Image],
    device: str,
    batch_size: int,
) -> torch.Tensor:
    """L2-normalised image features (float32, on CPU) for PIL images, in input order."""
    feats = [
        model.encode_image(torch.stack([preprocess(im) for im in batch]).to(device), normalize=True)
        .float()
        .cpu()
        for batch in batched(images, batch_size)
    ]
    return torch.cat(feats) if feats else torch.empty(0, 0)


@torch.no_grad()
def encode_texts(
    model: torch.nn.Module, tokenizer: Callable, texts: Sequence[str], device: str, batch_size: int
) -> torch.Tensor:
    """L2-normalised text features (float32, on CPU), in input order."""
    feats = [
        model.encode_text(tokenizer(list(batch)).to(device), normalize=True).float().cpu()
        for batch in batched(texts, batch_size)
    ]
    return torch.cat(feats) if feats else torch.empty(0, 0)


def iter_samples(tar_paths: Sequence[Path]) -> Iterator[tuple[Image.Image, str, dict]]:
    """Yield ``(image, caption, metadata)`` from shards in file order (no shuffling).

    A generator so a large holdout never sits decoded in memory. Samples lacking an image or
    caption are skipped with a warning; missing metadata becomes ``{}``; the sample key is added
    to the metadata as ``__key__``.
    """
    urls = [str(p) for p in tar_paths]
    if not urls:
        return
    skipped = 0
    for sample in wds.WebDataset(urls, shardshuffle=False).decode("pilrgb"):
        image, caption = sample.get("jpg"), sample.get("txt")
        if image is None or caption is None:
            skipped += 1
            continue
        meta = dict(sample.get("json") or {})
        meta["__key__"] = sample["__key__"]
        yield image, caption, meta
    if skipped:
        log.warning("skipped %d shard sample(s) without jpg or txt", skipped)


def encode_shards(
    model: torch.nn.Module,
    preprocess: Preprocess,
    tokenizer: Callable,
    tar_paths: Sequence[Path],
    device: str,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """Image features, caption features and metadata of every sample, row-aligned, file order.

    Streams batch by batch: only features and metadata are kept.
    """
    image_feats, text_feats, metadata = [], [], []
    for batch in batched(iter_samples(tar_paths), batch_size):
        images, captions, metas = zip(*batch, strict=True)
        image_feats.append(encode_images(model, preprocess, images, device, batch_size))
        text_feats.append(encode_texts(model, tokenizer, captions, device, batch_size))
        metadata.extend(metas)
    if not metadata:
        raise PipelineError(f"no samples with jpg and txt in {len(tar_paths)} shard(s)")
    return torch.cat(image_feats), torch.cat(text_feats), metadata


def encode_image_files(
    paths: Sequence[Path],
    model: torch.nn.Module,
    preprocess: Preprocess,
    device: str,
    batch_size: int,
) -> tuple[torch.Tensor, list[int], dict[str, int]]:
    """Features of the image files that exist and decode, the input positions they came from, and
    ``{"n_missing", "n_unreadable"}`` counts for the others (skipped, never fatal)."""
    counts = {"n_missing": 0, "n_unreadable": 0}
    feats: list[torch.Tensor] = []
    kept: list[int] = []
    for batch in batched(list(enumerate(paths)), batch_size):
        images = []
        for i, path in batch:
            if not Path(path).is_file():
                counts["n_missing"] += 1
                continue
            try:
                with Image.open(path) as im:
                    images.append(im.convert("RGB"))
            except (OSError, UnidentifiedImageError):
                counts["n_unreadable"] += 1
                continue
            kept.append(i)
        if images:
            feats.append(encode_images(model, preprocess, images, device, batch_size))
    if counts["n_missing"] or counts["n_unreadable"]:
        log.warning("skipped %d missing and %d unreadable image(s)", counts["n_missing"], counts["n_unreadable"])
    return (torch.cat(feats) if feats else torch.empty(0, 1)), kept, counts
