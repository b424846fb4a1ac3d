"""Classify a photo with a pretrained Hugging Face ViT, twice: through ``transformers.pipeline("image-
classification")`` (what the notes' demo did) and through our own :class:`vit.model.VisionTransformer` holding the
converted weights. Both top-k lists are printed side by side and must agree.

    python vit/classify.py                                       # google/vit-base-patch16-224 on skimage's cat
    python vit/classify.py --image astronaut --top-k 3
    python vit/classify.py --image photo.jpg --model ./my_vit    # a local save_pretrained directory
    python vit/classify.py --model runs/<run>/hf_model           # a vit/train.py --save-hf folder
    python vit/classify.py --model runs/<run>/ckpt/best.pt       # one of our checkpoints (an RGB model)

``--image`` is a file or one of the photos shipped inside scikit-image (astronaut, chelsea, coffee, rocket) or
scikit-learn (china, flower). Without internet a hub id fails at once with one line; a local directory never
touches the network. Exit code 1 if the two models disagree.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import rl_utils  # noqa: E402

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")  # shipped in the wheel (no pooch download)
SKLEARN_PHOTOS = ("china", "flower")


@dataclass
class Args:
    """Classify an image with a pretrained ViT via the Hugging Face pipeline and via our converted model."""

    model: str = "google/vit-base-patch16-224"
    """Hugging Face id (needs internet), a local save_pretrained directory, or a checkpoint file of ours (its
    weights converted to Hugging Face's model, preprocessing from its training statistics)"""
    image: str = "chelsea"
    """an image file, or a shipped photo: astronaut, chelsea, coffee, rocket (scikit-image), china, flower
    (scikit-learn)"""
    top_k: int = 5
    """how many labels to print"""
    tolerance: float = 1e-4
    """largest allowed difference between the two models' probabilities"""
    torch_threads: int = 1
    """torch CPU threads"""


def load_image(name: str):
    """A PIL RGB image from a file or a photo shipped with scikit-image / scikit-learn."""
    from PIL import Image

    if name in SKIMAGE_PHOTOS:
        import skimage.data

        return Image.fromarray(getattr(skimage.data, name)()).convert("RGB"), f"skimage.data.{name}()"
    if name in SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image(f"{name}.jpg")).convert("RGB"), f"sklearn {name}.jpg"
    path = Path(name).expanduser()
    if not path.is_file():
        raise rl_utils.UsageError(f"image not found: {name} (or use one of: "
                                  f"{', '.join(SKIMAGE_PHOTOS + SKLEARN_PHOTOS)})")
    try:
        return Image.open(path).convert("RGB"), str(path)
    except OSError as err:
        raise rl_utils.UsageError(f"cannot read image {path}: {err}") from None


def main() -> None:
    args = rl_utils.parse_args(Args)
    if args.top_k < 1:
        raise rl_utils.UsageError(f"--top-k must be >= 1, got {args.top_k}")
    torch.set_num_threads(max(1, args.torch_threads))
    path = Path(args.model).expanduser()
    local, file = path.is_dir(), path.is_file()
    if not (local or file) and (args.model.startswith((".", "/", "~")) or "/" not in args.model):
        raise rl_utils.UsageError(f"model not found: {args.model} (a save_pretrained directory, a checkpoint file, "
                                  "or a Hugging Face id owner/name)")
    image, image_source = load_image(args.image)
    from vit import pretrained as hub  # sets short hub timeouts

    if local or file:  # never reach for the network for a local model
        os.environ["HF_HUB_OFFLINE"] = "1"
    else:  # offline: a quick probe, then only the local cache is tried (no 45 s of retries)
        hub.go_offline_unless_reachable()
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from vit.model import from_hf, hf_image_processor, to_hf

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    pre = hub.load(str(path)) if file else None
    if pre is not None and pre.model.cfg.in_chans != 3:
        raise rl_utils.UsageError(f"{args.model} takes {pre.model.cfg.in_chans}-channel images; the "
                                  "image-classification pipeline feeds RGB photos (train on cifar10 or an imagefolder, "
                                  "or use vit/visualize_attention.py --image <dataset> for digits)")
    try:
        if pre is not None:  # our weights in Hugging Face's model, with the preprocessing they were trained with
            cfg = pre.model.cfg
            clf = pipeline("image-classification", model=to_hf(pre.model, pre.classes),
                           image_processor=hf_image_processor(cfg, pre.mean, pre.std), device=-1)
        else:
            clf = pipeline("image-classification", model=str(path) if local else args.model, device=-1)
    except ValueError as err:  # e.g. a model that pools patch tokens: Hugging Face's classifies the class token
        raise rl_utils.UsageError(f"cannot build a Hugging Face pipeline for {args.model}: {err}") from None
    except Exception as err:  # noqa: BLE001 - offline, unknown repo, ...: one line either way
        if local:
            raise rl_utils.UsageError(f"cannot load {args.model}: {type(err).__name__}: {err}") from None
        raise rl_utils.UsageError(hub.offline_message(args.model, err)) from None
    num_labels = len(clf.model.config.id2label)
    k = min(args.top_k, num_labels)
    theirs = clf(image, top_k=k)  # [{"label", "score"}], softmax probabilities, best first

    # Ours: weights read from the files (local dir) or converted from the pipeline's model (hub id); the input is
    # the pipeline's own preprocessing (resize, rescale, normalise), so only the networks are compared.
    ours_model = pre.model if pre else hub.load(str(path)).model if local else from_hf(clf.model).eval()
    pixels = clf.image_processor(images=image, return_tensors="pt")["pixel_values"]  # [1, 3, H, W]
    with torch.no_grad():
        probs = ours_model(pixels.float()).softmax(dim=-1)[0]  # [classes]
    top = probs.topk(k)
    labels = clf.model.config.id2label
    ours = [{"label": labels[int(i)], "score": float(p)} for p, i in zip(top.values, top.indices)]

    cfg = ours_model.cfg
    print(f"image: {image_source}, {image.size[0]}x{image.size[1]} | model: {args.model} (ViT {cfg.image_size}px, "
          f"patch {cfg.patch_size}, D {cfg.embed_dim}, depth {cfg.depth}, {num_labels} classes)")
    width = max(12, *(len(r["label"][:40]) for r in theirs + ours))
    print(f"{'rank':<5}{'pipeline(image-classification)':<{width + 11}}  ours (converted weights)")
    for rank, (a, b) in enumerate(zip(theirs, ours), 1):
        print(f"{rank:<5}{a['label'][:40]:<{width}} {a['score']:9.5f}  {b['label'][:40]:<{width}} {b['score']:9.5f}")
    # Same labels in the same order (up to ties), same probabilities.
    by_label = {r["label"]: r["score"] for r in ours}
    diff = max(abs(r["score"] - float(probs[clf.model.config.label2id[r["label"]]])) for r in theirs)
    same = [r["label"] for r in theirs] == [r["label"] for r in ours] or all(
        abs(r["score"] - by_label.get(r["label"], -1.0)) < args.tolerance for r in theirs)
    if same and diff < args.tolerance:
        print(f"agree: same top-{k} labels, max probability difference {diff:.1e}; top-1 {theirs[0]['label']!r} "
              f"({theirs[0]['score']:.4f})")
        return
    print(f"DISAGREE: max probability difference {diff:.1e} (tolerance {args.tolerance:g})", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    np.seterr(all="ignore")
    rl_utils.run_main(main)
