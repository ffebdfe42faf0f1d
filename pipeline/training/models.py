"""Model specs for ``derm1m evaluate --model SPEC``: our trained profile or any open_clip model.

Why: Derm1M compares DermLIP with CLIP and other models on the same benchmarks; a user must be
able to put OpenAI CLIP, the released DermLIP or their own checkpoint beside the model this
pipeline trained, with one syntax, offline (see :mod:`pretrained`).

A SPEC is ``[LABEL=]WHAT`` where WHAT is

- a training profile of ``params.yaml`` (``smoke``): its final checkpoint under ``models/``;
- ``MODEL/PRETRAINED``: an open_clip model name and a cached tag (``ViT-B-16/openai``) or a
  local checkpoint file (``derm1m-tiny/path/to/epoch_3.pt``);
- ``hf-hub:org/repo``: a hub model (config and weights) from the local Hugging Face cache.

LABEL names the row in the comparison (default: WHAT).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch

from pipeline.errors import PipelineError
from pipeline.training.configs import register_model_configs
from pipeline.training.pretrained import HF_HUB, Weights, resolve_weights

_LABEL = re.compile(r"^(?P<label>[A-Za-z0-9_.+-]+)=(?P<what>.+)$")


@dataclass(frozen=True)
class ModelSpec:
    """One model to evaluate: its row label, what open_clip builds, and where the spec came from."""

    label: str
    weights: Weights
    profile: str | None = None


def parse_model_spec(spec: str, profiles: dict[str, dict], models_dir: Path) -> ModelSpec:
    """Resolve ``spec`` (see the module doc) to a :class:`ModelSpec`; bad specs are one-line errors."""
    spec = spec.strip()
    match = _LABEL.match(spec)
    label, what = (match["label"], match["what"].strip()) if match else (spec, spec)
    if not what:
        raise PipelineError(f"model spec {spec!r} is empty after the label")
    if what in profiles:
        profile = profiles[what] or {}
        from pipeline.training.train import checkpoint_path, is_panderm_profile

        if is_panderm_profile(profile):  # its model config is generated next to the run
            from pipeline.training.panderm import register_config

            register_config(profile, models_dir, what)
        ckpt = checkpoint_path(models_dir, what, int(profile.get("epochs", 1)))
        if not ckpt.is_file():
            raise PipelineError(f"model spec {spec!r}: {ckpt} does not exist; run `derm1m train --profile {what}` first")
        start = str(profile.get("pretrained") or "")
        model = start if start.startswith(HF_HUB) else profile["model"]  # trained as --model hf-hub:...
        return ModelSpec(label, Weights(model, str(ckpt), "file"), profile=what)
    where = f"model spec {spec!r}"
    if what.startswith(HF_HUB):
        return ModelSpec(label, resolve_weights(what, None, where))
    if "/" in what:
        model, pretrained = what.split("/", 1)
        return ModelSpec(label, resolve_weights(model, pretrained, where))
    raise PipelineError(f"{where}: not a training profile ({', '.join(sorted(profiles))}), MODEL/PRETRAINED "
                        "(ViT-B-16/openai, derm1m-tiny/path.pt) or hf-hub:org/repo")


def parse_model_specs(specs: list[str], profiles: dict[str, dict], models_dir: Path) -> list[ModelSpec]:
    """Every spec resolved before any model is built (a typo in the third fails at once)."""
    resolved = [parse_model_spec(s, profiles, models_dir) for s in specs]
    labels = [m.label for m in resolved]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise PipelineError(f"model labels {dupes} repeat; name the rows with LABEL=SPEC")
    return resolved


def load_weights(weights: Weights, device: str) -> tuple[torch.nn.Module, Callable, Callable]:
    """Build the model in eval mode; return it with its validation transform and tokenizer.

    A profile trained from ``hf-hub:...`` is built from the hub's config and then given our
    checkpoint (open_clip would silently ignore a ``pretrained`` file for a hub model).
    """
    register_model_configs()
    hub_then_file = weights.model.startswith(HF_HUB) and weights.kind == "file"
    model, _, preprocess = open_clip.create_model_and_transforms(
        weights.model, pretrained=None if hub_then_file else weights.pretrained, device=device
    )
    if hub_then_file:  # open_clip ignores ``pretrained`` for hub models: our checkpoint goes on top
        open_clip.load_checkpoint(model, weights.pretrained, device=device)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(weights.model)
