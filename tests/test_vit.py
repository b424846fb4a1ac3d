"""ViT (vit/): every named config's shapes, position-embedding interpolation against timm, the written-out attention
against scaled_dot_product_attention, logits identical to timm's and Hugging Face's models after copying their
(random, locally built) weights, attention rollout, the classify demo offline on a real photo with a tiny saved HF
model, a smoke run of every script, one-line errors, determinism, the dl_utils helpers ViT added, and a learning
test (>= 90% on scikit-learn's digits in well under 2 minutes)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

import dl_utils
import rl_utils
from tests.conftest import ROOT, only_run_dir, run_script
from vit import finetune as finetune_mod
from vit import model as M
from vit import pretrained as hub
from vit import train as train_mod
from vit import visualize_attention as vis_mod

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
TIMM_VITS = set(timm.list_models("vit_*"))


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def timm_vit(**kw):
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(**kw)


def hf_vit(labels=("cat", "dog", "bird"), **kw):
    cfg = transformers.ViTConfig(**{**dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, intermediate_size=64), **kw},
                                 id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    model = transformers.ViTForImageClassification(cfg).eval()
    with torch.no_grad():  # HF zero-inits some tensors; random everything so nothing can hide
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


# ------------------------------------------------------------------------------------------------ shapes / configs
@pytest.mark.parametrize("name", list(M.CONFIGS))
def test_every_config_shapes_and_timm_parameter_count(name):
    cfg = M.get_config(name)
    big = cfg.image_size >= 224
    with torch.device("meta" if big else "cpu"):  # big ones on the meta device: shapes without memory or time
        model = M.VisionTransformer(cfg)
        x = torch.zeros(2, cfg.in_chans, cfg.image_size, cfg.image_size)
        out = model(x)
        tokens, _ = model.forward_features(x)
    assert out.shape == (2, cfg.num_classes)
    assert tokens.shape == (2, cfg.num_patches + 1, cfg.embed_dim)
    if name in TIMM_VITS:  # same parameter count as timm's model of that name
        with torch.device("meta"):
            theirs = timm.create_model(name, pretrained=False, num_classes=cfg.num_classes)
        assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_paper_sizes():
    # Paper Table 1 / timm: ViT-B/16 has 86.6M parameters, ViT-L/16 304.3M.
    with torch.device("meta"):
        assert sum(p.numel() for p in M.build("vit_base_patch16_224").parameters()) == 86_567_656
        assert sum(p.numel() for p in M.build("vit_large_patch16_224").parameters()) == 304_326_632


def test_unknown_config_and_bad_patch():
    with pytest.raises(KeyError, match="unknown ViT config"):
        M.get_config("vit_huge_patch99")
    model = M.build("vit_nano_patch2_8")
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.zeros(1, 1, 9, 9))


# -------------------------------------------------------------------------------------------------- attention paths
def test_written_out_attention_equals_sdpa_forward_and_backward():
    torch.manual_seed(0)
    model = M.build("vit_micro_patch4_28").eval()
    x = torch.randn(3, 1, 28, 28)
    fused = model.set_fused_attn(True)(x)
    g_fused = torch.autograd.grad(fused.square().sum(), model.pos_embed)[0]
    manual = model.set_fused_attn(False)(x)
    g_manual = torch.autograd.grad(manual.square().sum(), model.pos_embed)[0]
    assert (fused - manual).abs().max() < 1e-5
    assert (g_fused - g_manual).abs().max() < 1e-5
    maps = model.attention_maps(x)
    assert len(maps) == model.cfg.depth and maps[0].shape == (3, 4, 50, 50)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(3, 4, 50))  # each query's weights sum to 1


def test_drop_path_is_identity_in_eval_and_unbiased_in_training():
    x = torch.ones(20000, 1, 1)
    assert torch.equal(M.drop_path(x, 0.3, training=False), x)
    torch.manual_seed(0)
    y = M.drop_path(x, 0.3, training=True)
    values = y.unique()
    assert len(values) == 2 and values[0] == 0 and abs(values[1] - 1 / 0.7) < 1e-6
    assert abs(y.mean().item() - 1.0) < 0.03
    assert M.build("vit_micro_patch4_28", drop_path_rate=0.1).blocks[-1].drop_path1.p == pytest.approx(0.1)


# ------------------------------------------------------------------------------------- position-embedding resizing
@pytest.mark.parametrize("new_grid", [(10, 10), (4, 4), (5, 9)])
def test_pos_embed_resample_matches_timm(new_grid):
    from timm.layers import resample_abs_pos_embed

    pos = torch.randn(1, 1 + 7 * 7, 16)
    ours = M.resample_pos_embed(pos, new_grid, num_prefix_tokens=1)
    theirs = resample_abs_pos_embed(pos, list(new_grid), num_prefix_tokens=1)
    assert ours.shape == (1, 1 + new_grid[0] * new_grid[1], 16)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    assert torch.equal(ours[:, 0], pos[:, 0])  # the class token's row is kept


def test_other_input_size_matches_timm_dynamic_img_size():
    torch.manual_seed(0)
    theirs = timm_vit(img_size=32, patch_size=8, num_classes=5, embed_dim=32, depth=2, num_heads=4,
                      dynamic_img_size=True).eval()
    ours = M.from_timm(theirs).eval()
    x = torch.randn(2, 3, 48, 40)  # a 6x5 patch grid instead of 4x4
    assert (ours(x) - theirs(x)).abs().max() < 1e-4
    resized = M.from_timm(theirs).resize_pos_embed(48).eval()  # for good: the parameter itself is resampled
    assert resized.pos_embed.shape == (1, 1 + 36, 32)
    y = torch.randn(2, 3, 48, 48)
    assert (resized(y) - theirs(y)).abs().max() < 1e-4


# ------------------------------------------------------------------------------------------------ weight interop
@pytest.mark.parametrize("kw", [
    dict(img_size=32, patch_size=8, num_classes=5, embed_dim=48, depth=2, num_heads=4, mlp_ratio=2.0),
    dict(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=32, depth=3, num_heads=2,
         global_pool="avg"),
    dict(img_size=24, patch_size=4, num_classes=3, embed_dim=24, depth=1, num_heads=3, qkv_bias=False),
])
def test_timm_weights_give_identical_logits(kw, tmp_path):
    torch.manual_seed(0)
    theirs = timm_vit(**kw).eval()
    with torch.no_grad():
        for p in theirs.parameters():  # timm zero-inits biases and the head: randomise everything
            p.normal_(0, 0.1)
    ours = M.from_timm(theirs).eval()
    assert set(ours.state_dict()) == set(theirs.state_dict())  # timm's names, nothing more, nothing less
    x = torch.randn(4, kw.get("in_chans", 3), kw["img_size"], kw["img_size"])
    assert (ours(x) - theirs(x)).abs().max() < 1e-4
    assert (ours.set_fused_attn(False)(x) - theirs(x)).abs().max() < 1e-4
    # A timm state_dict file on disk loads through vit.pretrained (config inferred from the shapes).
    torch.save(theirs.state_dict(), tmp_path / "timm.pth")
    loaded = hub.load(str(tmp_path / "timm.pth"), num_heads=kw["num_heads"]).model
    assert (loaded(x) - theirs(x)).abs().max() < 1e-4


def test_hf_weights_give_identical_logits_both_ways(tmp_path):
    torch.manual_seed(0)
    theirs = hf_vit()
    ours = M.from_hf(theirs).eval()
    assert ours.cfg.layer_norm_eps == 1e-12  # HF's epsilon, not timm's 1e-6
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = theirs(pixel_values=x).logits
    assert (ours(x) - ref).abs().max() < 1e-4
    # Files written by save_pretrained (the hub's names, q/k/v separate) load too.
    theirs.save_pretrained(tmp_path)
    from_files = hub.load(str(tmp_path))
    assert from_files.classes == ["cat", "dog", "bird"]
    assert (from_files.model(x) - ref).abs().max() < 1e-4
    # And back: our weights in a ViTForImageClassification.
    again = M.to_hf(ours, ["cat", "dog", "bird"])
    with torch.no_grad():
        assert (again(pixel_values=x).logits - ref).abs().max() < 1e-4


def test_layer_norm_eps_matters_for_hf_weights():
    # With 1e-6 instead of HF's 1e-12 the logits move: tokens with tiny variance make epsilon visible.
    torch.manual_seed(0)
    theirs = hf_vit()
    ours = M.from_hf(theirs).eval()
    wrong = M.VisionTransformer(dataclasses.replace(ours.cfg, layer_norm_eps=1e-2)).eval()
    wrong.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert (wrong(x) - ours(x)).abs().max() > 1e-4


def test_hf_key_mapping_accepts_both_naming_schemes():
    qkv = torch.arange(12.0).view(3, 4)
    classic = {"vit.encoder.layer.0.attention.attention.query.weight": qkv[0:1],
               "vit.encoder.layer.0.attention.attention.key.weight": qkv[1:2],
               "vit.encoder.layer.0.attention.attention.value.weight": qkv[2:3]}
    v5 = {"vit.layers.0.attention.q_proj.weight": qkv[0:1], "vit.layers.0.attention.k_proj.weight": qkv[1:2],
          "vit.layers.0.attention.v_proj.weight": qkv[2:3]}
    for sd in (classic, v5):
        assert torch.equal(M.hf_to_timm_state_dict(sd)["blocks.0.attn.qkv.weight"], qkv)
    with pytest.raises(ValueError, match="unexpected"):
        M.hf_to_timm_state_dict({"vit.encoder.layer.0.mystery.weight": qkv})


# ------------------------------------------------------------------------------------------------ attention rollout
def test_attention_rollout_properties():
    b, h, n = 2, 3, 1 + 4
    uniform = [torch.full((b, h, n, n), 1 / n)] * 3
    roll = M.attention_rollout(uniform)
    torch.testing.assert_close(roll, torch.full((b, n - 1), 1 / (n - 1)))
    # Class token attends only to patch 2 in every block -> rollout concentrates there (plus the residual path).
    attn = torch.eye(n).expand(b, h, n, n).clone()
    attn[:, :, 0] = 0
    attn[:, :, 0, 3] = 1
    roll = M.attention_rollout([attn] * 4)
    assert (roll.argmax(dim=1) == 2).all() and torch.allclose(roll.sum(1), torch.ones(b))


# ------------------------------------------------------------------------------------------------ dl_utils helpers
def test_augment_helpers_are_seeded_and_shape_preserving():
    x = torch.rand(16, 3, 12, 12)
    a1 = dl_utils.Augment(degrees=10, translate=0.1, scale=(0.9, 1.1), shift=2, flip=0.5, seed=3)
    a2 = dl_utils.Augment(degrees=10, translate=0.1, scale=(0.9, 1.1), shift=2, flip=0.5, seed=3)
    y1, y2 = a1(x), a2(x)
    assert y1.shape == x.shape and torch.equal(y1, y2)
    assert not torch.equal(a1(x), y1)  # the generator moves on
    g = torch.Generator().manual_seed(0)
    shifted = dl_utils.random_shift(x, 2, g)
    g = torch.Generator().manual_seed(0)
    dy, dx = torch.randint(0, 5, (16,), generator=g), torch.randint(0, 5, (16,), generator=g)
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(16):
        assert torch.equal(shifted[i], padded[i, :, dy[i]:dy[i] + 12, dx[i]:dx[i] + 12])
    assert (dl_utils.random_affine(x) - x).abs().max() < 1e-5  # identity transform


def test_schedule_optimizer_groups_confusion_matrix(tmp_path):
    assert dl_utils.warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert dl_utils.warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert dl_utils.warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert dl_utils.warmup_cosine(100, 100, 10, min_ratio=0.1) == pytest.approx(0.1)
    model = M.build("vit_nano_patch2_8")
    decay, no_decay = dl_utils.param_groups_weight_decay(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert {"pos_embed", "cls_token", "blocks.0.norm1.weight", "head.bias"} <= no_decay_names
    assert all(p.ndim >= 2 for p in decay["params"]) and "pos_embed" not in {names[id(p)] for p in decay["params"]}
    cm = dl_utils.confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert dl_utils.plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / "cm.png").is_file()


def test_imagefolder_dataset(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for k, name in enumerate(("ants", "bees")):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (20 + i, 17), color=(40 * k, 100, 200)).save(tmp_path / split / name / f"{i}.png")
    data = dl_utils.load_imagefolder(tmp_path, size=16)
    assert data.train_x.shape == (6, 3, 16, 16) and data.train_x.dtype == torch.uint8
    assert list(data.classes) == ["ants", "bees"] and data.test_y.tolist() == [0, 0, 0, 1, 1, 1]
    single = dl_utils.load_imagefolder(tmp_path / "train", size=8)  # one tree: a seeded 80/20 split
    assert len(single.train_y) + len(single.test_y) == 6 and len(single.test_y) == 1
    with pytest.raises(rl_utils.UsageError, match="holds no CIFAR-10"):  # a folder without the batches
        dl_utils.load_dataset("cifar10", str(tmp_path))


# ------------------------------------------------------------------------------------------------ scripts
def run_inprocess(monkeypatch, capsys, module, script: str, *args) -> tuple[int, str, str]:
    """Call a script's main() as ``python script args`` would (argv, one-line errors, exit codes), without paying
    for a new interpreter and its imports; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", [script, *map(str, args)])
    code = 0
    try:
        rl_utils.run_main(module.main)
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_smoke_run_folder_and_determinism(tmp_path, monkeypatch, capsys):
    args = ["--epochs", "2", "--train-subset", "256", "--test-subset", "128", "--batch-size", "64", "--seed", "3",
            "--global-pool", "token", "--save-hf"]
    out = run_script("vit/train.py", *args, "--runs-dir", tmp_path / "a")  # as a user runs it
    run = only_run_dir(tmp_path / "a")
    assert run.name.startswith("mnist5k__vit_micro_patch7_28__3__")
    for f in ("config.json", "metrics.csv", "learning_curve.png", "confusion_matrix.png", "summary.json",
              "ckpt/best.pt", "ckpt/latest.pt", "model_timm.pth", "hf_model/config.json", "hf_model/model.safetensors"):
        assert (run / f).is_file(), f
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["steps"] == 8 and 0 <= summary["test_acc"] <= 1
    assert out.stdout.strip().splitlines()[-1].startswith("test acc")
    code, _, _ = run_inprocess(monkeypatch, capsys, train_mod, "vit/train.py", *args, "--runs-dir", tmp_path / "b")
    assert code == 0  # same seed -> same numbers on CPU
    again = json.loads((only_run_dir(tmp_path / "b") / "summary.json").read_text())
    for key in ("train_loss", "train_acc", "test_acc", "per_class_acc"):
        assert again[key] == summary[key], key
    # The saved Hugging Face model and the timm-format state_dict give the same logits as our checkpoint.
    ours = hub.load(str(run / "ckpt" / "latest.pt")).model
    theirs = transformers.ViTForImageClassification.from_pretrained(run / "hf_model", local_files_only=True).eval()
    as_timm = timm_vit(img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=128, depth=6, num_heads=4,
                       mlp_ratio=2.0).eval()
    as_timm.load_state_dict(torch.load(run / "model_timm.pth"))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert (ours(x) - theirs(pixel_values=x).logits).abs().max() < 1e-4
        assert (ours(x) - as_timm(x)).abs().max() < 1e-4
    # Fine-tune from both formats: the HF directory (as a user) and our checkpoint file (digits 8px -> 28px).
    ft_args = ["--dataset", "digits", "--image-size", "28", "--steps", "6", "--warmup-steps", "2", "--batch-size",
               "32", "--train-subset", "96", "--test-subset", "64", "--runs-dir", tmp_path / "ft"]
    ft = run_script("vit/finetune.py", "--pretrained", run / "hf_model", *ft_args, "--run-name", "hf")
    assert "fine-tuned" in ft.stdout.strip().splitlines()[-1]
    code, _, _ = run_inprocess(monkeypatch, capsys, finetune_mod, "vit/finetune.py", "--pretrained",
                               run / "ckpt" / "best.pt", *ft_args, "--run-name", "ckpt")
    assert code == 0
    for name, fmt in (("hf", "hf"), ("ckpt", "checkpoint")):
        s = json.loads((tmp_path / "ft" / name / "summary.json").read_text())
        assert s["steps"] == 6 and s["pretrained_image_size"] == 28 and s["pretrained_format"] == fmt
    code, out, _ = run_inprocess(monkeypatch, capsys, vis_mod, "vit/visualize_attention.py", "--model",
                                 run / "ckpt" / "best.pt", "--image", "mnist5k", "--num-images", "3")
    # without --out the figure goes beside the run, never into the repository's tracked vit/figures/
    assert code == 0 and (run / "attention_rollout.png").is_file() and "rollout" in out


def test_imagefolder_trains_with_its_defaults_and_classify_takes_the_run(tmp_path, monkeypatch, capsys):
    """`--dataset imagefolder --data-dir X` as the README shows it: the preset's patch fits the 64 px images."""
    from PIL import Image

    for k, name in enumerate(("ants", "bees")):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (70 + i, 64), color=(120 * k, 90, 30 * i)).save(tmp_path / "data" / name / f"{i}.png")
    code, out, err = run_inprocess(monkeypatch, capsys, train_mod, "vit/train.py", "--dataset", "imagefolder",
                                   "--data-dir", tmp_path / "data", "--epochs", "1", "--depth", "1",
                                   "--global-pool", "token", "--save-hf", "--runs-dir", tmp_path / "runs")
    assert code == 0, err
    run = only_run_dir(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["image_size"] == 64 and summary["patch_size"] == 8
    # What the run leaves works offline in the Hugging Face demo: the --save-hf folder (weights, config and
    # preprocessor) and the checkpoint file; the pipeline and our model agree on both.
    assert (run / "hf_model" / "preprocessor_config.json").is_file()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for model in (run / "hf_model", run / "ckpt" / "best.pt"):
        proc = subprocess.run([sys.executable, "vit/classify.py", "--model", str(model), "--image", "coffee"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip().splitlines()[-1].startswith("agree: same top-2 labels"), proc.stdout


def test_resume_continues_exactly(tmp_path, monkeypatch, capsys):
    base = ["--epochs", "2", "--train-subset", "128", "--test-subset", "64", "--batch-size", "64",
            "--model", "vit_nano_patch2_8", "--dataset", "digits"]
    for argv in ([*base, "--runs-dir", tmp_path, "--run-name", "full"],
                 [*base, "--epochs", "1", "--runs-dir", tmp_path, "--run-name", "part"],
                 ["--resume", tmp_path / "part" / "ckpt" / "latest.pt", "--epochs", "2"]):
        assert run_inprocess(monkeypatch, capsys, train_mod, "vit/train.py", *argv)[0] == 0
    full = json.loads((tmp_path / "full" / "summary.json").read_text())
    resumed = json.loads((tmp_path / "part" / "summary.json").read_text())
    assert resumed["epochs"] == 2 and resumed["test_acc"] == full["test_acc"]
    assert resumed["train_loss"] == full["train_loss"]


def test_finetune_from_timm_state_dict_resizes_pos_embed(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    theirs = timm_vit(img_size=16, patch_size=4, in_chans=3, num_classes=7, embed_dim=32, depth=2, num_heads=2)
    torch.save(theirs.state_dict(), tmp_path / "timm_vit.pth")
    code, out, err = run_inprocess(
        monkeypatch, capsys, finetune_mod, "vit/finetune.py", "--pretrained", tmp_path / "timm_vit.pth",
        "--num-heads", "2", "--dataset", "digits", "--image-size", "8", "--steps", "3", "--warmup-steps", "1",
        "--train-subset", "64", "--test-subset", "32", "--runs-dir", tmp_path, "--run-name", "ft")
    assert code == 0, err
    s = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert s["image_size"] == 8 and s["pretrained_image_size"] == 16 and s["pretrained_format"] == "timm"


def test_bench_speed_smoke():
    out = run_script("vit/bench_speed.py", "--configs", "vit_nano_patch2_8", "--batch-sizes", "8", "--repeats", "2",
                     "--steps", "1", "--warmup", "1")
    assert "ours/timm" in out.stdout.strip().splitlines()[-1]


def test_visualize_random_init_photo(tmp_path):
    out = run_script("vit/visualize_attention.py", "--random-init", "vit_nano_patch2_8", "--image", "coffee",
                     "--out", tmp_path / "r.png")
    assert (tmp_path / "r.png").is_file() and "rollout" in out.stdout


# ------------------------------------------------------------------------------------------------ the HF demo
def test_classify_demo_offline_with_tiny_saved_model(tmp_path):
    model = hf_vit(labels=("tabby cat", "coffee mug", "astronaut", "rocket"))
    model.save_pretrained(tmp_path / "tiny")
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "tiny")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "vit/classify.py", "--model", str(tmp_path / "tiny"), "--image", "chelsea",
                           "--top-k", "3"], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("agree: same top-3 labels")
    assert sum(line[:1].isdigit() for line in lines) == 3  # three ranked rows


def test_classify_demo_hub_unreachable_is_one_line():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "vit/classify.py", "--model", "dlrl-playground/no-such-vit"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    err = [line for line in proc.stderr.strip().splitlines() if line]
    assert len(err) == 1 and err[0].startswith("error: cannot fetch") and "unreachable" in err[0]
    assert time.time() - t0 < 60


# ------------------------------------------------------------------------------------------------ bad input
def test_missing_dataset_path_is_one_error_line_as_a_user():
    proc = run_script("vit/train.py", "--dataset", "cifar10", "--data-dir", "/nonexistent/cifar", check=False,
                      timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: data folder not found: /nonexistent/cifar"]


@pytest.mark.parametrize("args, message", [
    (["--dataset", "imagefolder", "--data-dir", "/nonexistent/photos"], "data folder not found"),
    (["--dataset", "imagefolder"], "needs --data-dir"),
    (["--model", "vit_gigantic"], "unknown model config"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--save-hf"], "--save-hf needs --global-pool token"),
    (["--bogus-flag"], "unrecognized arguments"),
])
def test_bad_input_is_one_error_line(args, message, monkeypatch, capsys):
    code, _, err = run_inprocess(monkeypatch, capsys, train_mod, "vit/train.py", *args)
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err


def test_finetune_missing_pretrained_is_one_error_line(tmp_path, monkeypatch, capsys):
    code, _, err = run_inprocess(monkeypatch, capsys, finetune_mod, "vit/finetune.py", "--pretrained",
                                 tmp_path / "nope.pth")
    assert code == 2 and err.strip().startswith("error: pretrained model not found")


# ------------------------------------------------------------------------------------------------ learning
def test_learns_digits_quickly(tmp_path, monkeypatch, capsys):
    # 25 of the preset's 60 epochs: >= 0.93 measured here; the full preset reaches 0.98 (README).
    code, _, err = run_inprocess(monkeypatch, capsys, train_mod, "vit/train.py", "--dataset", "digits", "--epochs",
                                 "25", "--runs-dir", tmp_path, "--run-name", "digits")
    assert code == 0, err
    summary = json.loads((tmp_path / "digits" / "summary.json").read_text())
    assert summary["test_acc"] >= 0.90, summary
    assert summary["wall_time_s"] < 120 and math.isfinite(summary["train_loss"])
