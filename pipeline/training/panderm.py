"""DermLIP-PanDerm: a CLIP whose image tower starts from a PanDerm ViT checkpoint and whose text
tower is a local Hugging Face encoder (e.g. PubMedBERT), trained by open_clip_train.

Why an initial checkpoint: open_clip_train builds its model from a config name and an optional
``--pretrained`` file; it cannot load one tower from one file and the other from a Hugging Face
folder. So we write the model config (timm ViT trunk + HF text tower, both local), build the
model once, load the PanDerm weights into the image trunk (refusing a checkpoint that does not
fit), and save the whole CLIP as ``<logs>/<name>-init.pt`` for ``--pretrained``. Nothing is ever
downloaded: both inputs must be on local disk.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from pipeline.errors import PipelineError
from pipeline.training.configs import EXTRA_CONFIGS_ENV, register_model_configs

log = logging.getLogger(__name__)

# Leading parts that checkpoints of ViT pretraining code put before timm's own key names.
_PREFIXES = ("module.", "model.", "encoder.", "backbone.", "visual.trunk.", "visual.", "trunk.")
_MIN_MATCHED = 0.9  # share of the trunk's tensors the checkpoint must provide


def model_config(profile: dict) -> dict:
    """open_clip model config of the profile: timm ViT image trunk + local HF text encoder."""
    text = str(Path(profile["text_encoder"]).resolve())
    return {
        "embed_dim": int(profile.get("embed_dim") or 512),
        "vision_cfg": {
            "timm_model_name": profile.get("vision_model") or "vit_base_patch16_224",
            "timm_model_pretrained": False,
            "timm_pool": "",
            "timm_proj": "linear",
            "image_size": int(profile.get("image_size") or 224),
        },
        "text_cfg": {
            "hf_model_name": text,
            "hf_tokenizer_name": text,
            "hf_proj_type": "mlp",
            "hf_pooler_type": "cls_pooler",
            "context_length": int(profile.get("context_length") or 256),
        },
    }


def register_config(profile: dict, logs_dir: Path, name: str) -> str:
    """Write ``<logs>/<name>-model/<model>.json``, register it here and for torchrun workers.

    Returns the model name to pass to open_clip (the profile's ``model``).
    """
    model_name = profile["model"]
    folder = Path(logs_dir).resolve() / f"{name}-model"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{model_name}.json").write_text(json.dumps(model_config(profile), indent=2, sort_keys=True) + "\n")
    os.environ[EXTRA_CONFIGS_ENV] = str(folder)  # inherited by torchrun's workers
    register_model_configs()
    return model_name


def _unwrap(obj: object) -> dict[str, torch.Tensor]:
    for key in ("model", "state_dict", "module", "teacher", "student"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return _unwrap(obj[key])
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PipelineError("the vision checkpoint holds no state dict of tensors")
    return obj


def _timm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes; turn BEiT/CAE-style ``q_bias``/``v_bias`` into timm's ``qkv.bias``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        out[key] = value
    for key in [k for k in out if k.endswith(".attn.q_bias")]:
        base = key[: -len("q_bias")]
        if f"{base}v_bias" in out and f"{base}qkv.bias" not in out:
            q, v = out.pop(key), out.pop(f"{base}v_bias")
            out[f"{base}qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
    return out


def load_vision_weights(trunk: torch.nn.Module, checkpoint: Path) -> tuple[int, int]:
    """Load a PanDerm (timm ViT layout) checkpoint into ``trunk``; return (loaded, trunk tensors).

    Refuses (``PipelineError``) a file that is not a torch checkpoint or that provides under 90%
    of the trunk's tensors with matching shapes, naming a few missing keys: a wrong
    architecture would otherwise train from random weights without a word.
    """
    try:
        obj = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise PipelineError(f"{checkpoint}: not a readable torch checkpoint ({exc.__class__.__name__})") from None
    try:
        state = _timm_names(_unwrap(obj))
    except PipelineError as exc:
        raise PipelineError(f"{checkpoint}: {exc}") from None
    own = trunk.state_dict()
    matched = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if len(matched) < _MIN_MATCHED * len(own):
        missing = sorted(set(own) - set(matched))[:4]
        raise PipelineError(
            f"{checkpoint}: only {len(matched)} of the vision trunk's {len(own)} tensors match by name and shape "
            f"(missing e.g. {missing}); set the profile's vision_model to the checkpoint's timm architecture")
    unused = len(state) - len(matched)
    if unused:
        log.warning("%s: %d checkpoint tensor(s) have no place in the trunk and are ignored", checkpoint, unused)
    trunk.load_state_dict(matched, strict=False)
    return len(matched), len(own)


def build_initial_checkpoint(profile: dict, logs_dir: Path, name: str) -> Path:
    """Build the CLIP (PanDerm image trunk + local text encoder) and save it for ``--pretrained``."""
    import open_clip

    model_name = register_config(profile, logs_dir, name)
    try:
        model = open_clip.create_model(model_name, pretrained=None, device="cpu")
    except (OSError, ValueError, ImportError) as exc:
        raise PipelineError(f"training profile {name}: cannot build the text encoder from "
                            f"{profile['text_encoder']!r} ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    loaded, total = load_vision_weights(model.visual.trunk, Path(profile["vision_checkpoint"]))
    log.info("PanDerm: %d/%d vision tensors loaded from %s", loaded, total, profile["vision_checkpoint"])
    out = Path(logs_dir) / f"{name}-init.pt"
    torch.save({"state_dict": model.state_dict()}, out)
    return out
