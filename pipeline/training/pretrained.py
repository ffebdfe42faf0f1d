"""Where a model's starting weights come from: an open_clip tag, an ``hf-hub:`` id or a local file.

Why a module: Derm1M's DermLIP starts from OpenAI's CLIP (``--pretrained openai``), and this
pipeline never downloads anything at run time. So a tag or hub id must already sit in the local
cache; when it does not, the user gets one line saying how to fetch it on a machine with internet
(before any data stage or trainer spins up), not a urllib traceback minutes into a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import open_clip

from pipeline.errors import PipelineError
from pipeline.training.configs import register_model_configs

HF_HUB = "hf-hub:"
# The weight files open_clip looks for in a hub repo (safetensors first).
HF_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
HF_CONFIG = "open_clip_config.json"


@dataclass(frozen=True)
class Weights:
    """What to hand open_clip: ``model`` (a config name or an ``hf-hub:`` id) and ``pretrained``.

    ``kind`` is ``none`` (random init from the config), ``file``, ``tag`` or ``hf-hub``.
    """

    model: str
    pretrained: str | None
    kind: str


def _download_hint(model: str, pretrained: str | None) -> str:
    call = f"open_clip.create_model({model!r}" + (f", pretrained={pretrained!r})" if pretrained else ")")
    return (f'on a machine with internet run `python -c "import open_clip; {call}"`, then copy its cache '
            "(~/.cache/huggingface) here, or point pretrained at the downloaded weights file")


def _hub_cached(repo_id: str, filenames: tuple[str, ...]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        found = try_to_load_from_cache(repo_id, name)
        if isinstance(found, str) and os.path.isfile(found):
            return True
    return False


def tag_cached(model: str, tag: str) -> bool:
    """True when open_clip's weights for ``model``/``tag`` are in its local cache (no network).

    Mirrors ``open_clip.pretrained.download_pretrained``: a tag with a hub entry is fetched from
    the hub only (a file under ``~/.cache/clip`` is then never used), others from their URL.
    """
    cfg = open_clip.get_pretrained_cfg(model, tag)
    hub = cfg.get("hf_hub") or ""
    if hub:
        repo_id, filename = os.path.split(hub)  # "org/repo/" or "org/repo/file.bin", as open_clip splits it
        names = (filename, str(Path(filename).with_suffix(".safetensors"))) if filename else HF_WEIGHTS
        return _hub_cached(repo_id, names)
    url = cfg.get("url") or ""
    return bool(url) and (Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)).is_file()


def resolve_weights(model: str, pretrained: str | None, what: str = "training profile") -> Weights:
    """Check that ``model`` with ``pretrained`` can be built offline and say how open_clip gets it.

    ``pretrained`` is None/empty (the config's random init), a local file, an open_clip tag of
    ``model`` (``openai``; must be cached), or ``hf-hub:org/repo`` (config and weights from the
    hub cache; it replaces ``model``). Anything else is a one-line :class:`PipelineError`.
    """
    register_model_configs()
    pretrained = (pretrained or "").strip() or None
    if pretrained and pretrained.startswith(HF_HUB):
        model, pretrained = pretrained, None
    if model.startswith(HF_HUB):
        repo = model[len(HF_HUB):]
        if not repo or not _hub_cached(repo, (HF_CONFIG,)) or not _hub_cached(repo, HF_WEIGHTS):
            raise PipelineError(f"{what}: {model} is not in the local Hugging Face cache and this pipeline "
                                f"never downloads weights; {_download_hint(model, None)}")
        return Weights(model, None, "hf-hub")
    if model not in open_clip.list_models():
        raise PipelineError(f"{what}: unknown model {model!r}; see open_clip.list_models() "
                            "or pipeline/training/model_configs/")
    if pretrained is None:
        return Weights(model, None, "none")
    if Path(pretrained).is_file():
        return Weights(model, str(pretrained), "file")
    if pretrained in open_clip.list_pretrained_tags_by_model(model):
        if not tag_cached(model, pretrained):
            raise PipelineError(f"{what}: pretrained {pretrained!r} of {model} is not in the local cache and this "
                                f"pipeline never downloads weights; {_download_hint(model, pretrained)}")
        return Weights(model, pretrained, "tag")
    if "/" in pretrained or os.sep in pretrained or Path(pretrained).suffix:
        raise PipelineError(f"{what}: pretrained {pretrained!r} is not a local file; check the path")
    tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)[:6]) or "none"
    raise PipelineError(f"{what}: pretrained {pretrained!r} is neither a local file nor an open_clip tag of "
                        f"{model} (tags: {tags})")
