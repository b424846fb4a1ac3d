"""Load a pretrained ViT into our :class:`~vit.model.VisionTransformer`, from wherever it lives:

* a Hugging Face id (``google/vit-base-patch16-224``) or a local ``save_pretrained`` directory (config.json +
  model.safetensors, optional preprocessor_config.json);
* a timm model name (``vit_base_patch16_224.augreg_in21k``), downloaded by timm;
* a local file: one of our checkpoints (``ckpt/best.pt`` from vit/train.py), or a timm-named ``state_dict``
  (``.pth``/``.bin``/``.safetensors``, e.g. ``torch.save(timm_model.state_dict(), f)``).

Each comes back with its class names and the input normalisation it was trained with. Network failures become a
one-line :class:`rl_utils.UsageError` (nothing hangs: hub timeouts are short, and local paths never touch the
network).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from dl_utils import go_offline_unless_reachable, hub_reachable, offline_message  # noqa: F401 - re-exported
from rl_utils import UsageError
from vit.model import (
    VisionTransformer,
    ViTConfig,
    config_from_hf,
    config_from_state_dict,
    config_from_timm,
    hf_to_timm_state_dict,
    load_timm_state_dict,
)

# A blocked network should fail in seconds, not after huggingface_hub's default 10 s x retries.
os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "5")


@dataclass
class Pretrained:
    model: VisionTransformer
    classes: list[str]
    mean: list[float]  # per-channel input normalisation on the [0, 1] scale
    std: list[float]
    source: str  # "hf", "timm" or "checkpoint"


def _hf_dir(path: Path) -> Pretrained:
    from transformers import ViTConfig as HFViTConfig

    cfg_hf = HFViTConfig.from_pretrained(str(path), local_files_only=True)
    weights = path / "model.safetensors"
    if weights.is_file():
        from safetensors.torch import load_file

        sd = load_file(str(weights))
    elif (path / "pytorch_model.bin").is_file():
        sd = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise UsageError(f"{path} has a config.json but no model.safetensors / pytorch_model.bin")
    model = VisionTransformer(config_from_hf(cfg_hf))
    load_timm_state_dict(model, hf_to_timm_state_dict(sd))
    mean, std = [0.5] * 3, [0.5] * 3  # ViTImageProcessor's defaults
    proc = path / "preprocessor_config.json"
    if proc.is_file():
        p = json.loads(proc.read_text())
        mean, std = p.get("image_mean", mean), p.get("image_std", std)
    classes = [cfg_hf.id2label[i] for i in sorted(cfg_hf.id2label)]
    return Pretrained(model.eval(), classes, list(mean), list(std), "hf")


def _file(path: Path, num_heads: int = 0) -> Pretrained:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        blob: Any = load_file(str(path))
    else:
        try:
            blob = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001
            raise UsageError(f"cannot read {path}: {type(err).__name__}: {err}") from None
    if isinstance(blob, dict) and "vit_config" in blob:  # our checkpoint (vit/train.py, vit/finetune.py)
        known = {f.name for f in fields(ViTConfig)}
        cfg = ViTConfig(**{k: v for k, v in blob["vit_config"].items() if k in known})
        model = VisionTransformer(cfg)
        model.load_state_dict(blob["model"])
        mean, std = blob.get("norm") or ([0.0] * cfg.in_chans, [1.0] * cfg.in_chans)
        classes = blob.get("classes") or [str(i) for i in range(cfg.num_classes)]
        return Pretrained(model.eval(), list(classes), list(mean), list(std), "checkpoint")
    sd = blob.get("state_dict", blob.get("model", blob)) if isinstance(blob, dict) else None
    if not isinstance(sd, dict) or "patch_embed.proj.weight" not in sd:
        raise UsageError(f"{path} is neither a vit/train.py checkpoint nor a timm ViT state_dict")
    cfg = config_from_state_dict(sd, num_heads=num_heads)
    model = VisionTransformer(cfg)
    try:
        load_timm_state_dict(model, sd)
    except ValueError as err:
        raise UsageError(f"{path}: {err}") from None
    # timm's ImageNet ViTs (augreg) normalise with mean = std = 0.5, like Hugging Face's.
    return Pretrained(model.eval(), [str(i) for i in range(cfg.num_classes)], [0.5] * cfg.in_chans,
                      [0.5] * cfg.in_chans, "timm")


def _timm_name(name: str) -> Pretrained:
    go_offline_unless_reachable()
    import timm

    try:
        t = timm.create_model(name, pretrained=True)
    except Exception as err:  # noqa: BLE001 - any hub failure means the same thing to the user
        raise UsageError(offline_message(name, err)) from None
    model = VisionTransformer(config_from_timm(t))
    load_timm_state_dict(model, t.state_dict())
    cfg = t.pretrained_cfg
    classes = [str(i) for i in range(model.cfg.num_classes)]
    return Pretrained(model.eval(), classes, list(cfg.get("mean", (0.5,) * 3)), list(cfg.get("std", (0.5,) * 3)),
                      "timm")


def _hf_hub(repo_id: str) -> Pretrained:
    go_offline_unless_reachable()
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo_id, allow_patterns=["config.json", "model.safetensors",
                                                          "preprocessor_config.json"])
    except Exception as err:  # noqa: BLE001
        raise UsageError(offline_message(repo_id, err)) from None
    return _hf_dir(Path(path))


def is_timm_name(name: str) -> bool:
    import timm

    return name.split(".")[0] in timm.list_models("vit_*") and "/" not in name


def load(source: str, num_heads: int = 0) -> Pretrained:
    """A pretrained ViT from a local path, a timm name or a Hugging Face id (tried in that order)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"{path} is not a Hugging Face model directory (no config.json)")
        return _hf_dir(path)
    if path.is_file():
        return _file(path, num_heads)
    if source.endswith((".pt", ".pth", ".bin", ".safetensors")) or source.startswith((".", "/", "~")):
        raise UsageError(f"pretrained model not found: {source}")
    if is_timm_name(source):
        return _timm_name(source)
    if "/" in source:
        return _hf_hub(source)
    raise UsageError(f"unknown pretrained model {source!r}: not a local path, a timm vit_* name or a Hugging Face "
                     f"id (owner/name)")
