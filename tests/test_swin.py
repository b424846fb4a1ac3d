"""Swin Transformer (swin_transformer/): windows, shift mask, relative-position index, timm equality, shapes,
padding, attention paths, scripts (train / visualize / bench) and a fast learning test."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from swin_transformer.model import (
    MASK_VALUE,
    PatchMerging,
    SwinBlock,
    SwinTransformer,
    WindowAttention,
    attention_written_out,
    config_from_state_dict,
    from_timm,
    get_config,
    is_timm_state_dict,
    ours_to_timm,
    relative_position_index,
    shift_attention_mask,
    shift_region_labels,
    timm_to_ours,
    window_partition,
    window_reverse,
)
from tests.conftest import only_run_dir, run_script

timm = pytest.importorskip("timm")
from timm.models.swin_transformer import PatchMerging as TimmPatchMerging  # noqa: E402
from timm.models.swin_transformer import SwinTransformer as TimmSwin  # noqa: E402


# ----------------------------------------------------------------------------------------------------------------
# Windows
# ----------------------------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 3), nh=st.integers(1, 4), nw=st.integers(1, 4), m=st.integers(1, 5), c=st.integers(1, 4))
def test_window_reverse_inverts_partition(b, nh, nw, m, c):
    x = torch.randn(b, nh * m, nw * m, c)
    windows = window_partition(x, m)
    assert windows.shape == (b * nh * nw, m, m, c)
    assert torch.equal(window_reverse(windows, m, nh * m, nw * m), x)
    # batch-major, row-major order: window k of image i is the block at window-row k // nw, window-col k % nw
    k, i = nh * nw - 1, b - 1
    r, col = divmod(k, nw)
    assert torch.equal(windows[i * nh * nw + k], x[i, r * m:(r + 1) * m, col * m:(col + 1) * m])


# ----------------------------------------------------------------------------------------------------------------
# Shift mask: brute force on coordinates, independent of the region-labelling code
# ----------------------------------------------------------------------------------------------------------------
def _mask_violations(H: int, M: int, s: int, pad_before_shift: bool) -> tuple[int, int]:
    """Roll/pad a grid of *original* (row, col) coordinates exactly as SwinBlock does, cut it into windows and
    compare with the mask. Two tokens of a window are true neighbours iff their original coordinates differ by
    < M on both axes (a pair that the roll wrapped around differs by >= Hp - M + 1 > M). Returns (pairs the mask
    allows that are not neighbours, neighbour pairs the mask blocks); padding tokens (no coordinate) are skipped."""
    Hp = math.ceil(H / M) * M
    if pad_before_shift:  # padding first: padded cells get their own (virtual) coordinates beyond H
        coords = torch.stack(torch.meshgrid(torch.arange(Hp), torch.arange(Hp), indexing="ij"), -1).float()[None]
        coords = torch.roll(coords, (-s, -s), (1, 2))
    else:  # timm: roll the real map, then pad with "no coordinate"
        coords = torch.stack(torch.meshgrid(torch.arange(H), torch.arange(H), indexing="ij"), -1).float()[None]
        coords = F.pad(torch.roll(coords, (-s, -s), (1, 2)), (0, 0, 0, Hp - H, 0, Hp - H), value=float("nan"))
    win = window_partition(coords, M).view(-1, M * M, 2)  # [nW, N, 2]
    diff = (win[:, :, None] - win[:, None, :]).abs()  # [nW, N, N, 2]
    valid = ~diff.isnan().any(-1)
    near = (diff < M).all(-1)
    allowed = shift_attention_mask(Hp, Hp, M, s) == 0
    return int((allowed & valid & ~near).sum()), int((~allowed & valid & near).sum())


@pytest.mark.parametrize("M", [2, 3, 4, 5, 7])
def test_shift_mask_never_mixes_regions(M):
    for H in range(M + 1, 3 * M + 3):  # divisible and padded sizes; shift is on only when H > M
        assert _mask_violations(H, M, M // 2, pad_before_shift=True) == (0, 0), (H, M)


def test_timm_pad_after_roll_mixes_regions_when_padding():
    # timm pads *after* the roll, so for sizes that need padding the strips no longer line up with the mask;
    # with sizes that divide (all of timm's 224 models) both orders are the same and correct.
    bad, blocked = _mask_violations(18, 7, 3, pad_before_shift=False)
    assert bad > 0 and blocked == 0
    assert _mask_violations(14, 7, 3, pad_before_shift=False) == (0, 0)


def test_shift_mask_values_and_regions():
    mask = shift_attention_mask(14, 14, 7, 3)  # [nW, N, N]
    assert mask.shape == (4, 49, 49)
    assert set(mask.unique().tolist()) == {0.0, MASK_VALUE}
    assert torch.equal(mask, mask.transpose(1, 2))  # "same region" is symmetric
    assert torch.all(mask.diagonal(dim1=1, dim2=2) == 0)  # a token always sees itself: no all-masked rows
    assert torch.all(mask[0] == 0)  # the top-left window holds untouched content only
    labels = shift_region_labels(14, 14, 7, 3)
    assert labels.unique().tolist() == list(range(9))
    # brute force on the labels: mask[w, i, j] == 0 iff tokens i and j of window w carry the same label
    lab = window_partition(labels.view(1, 14, 14, 1), 7).view(4, 49)
    for w in range(4):
        for i in range(49):
            for j in range(49):
                assert (mask[w, i, j] == 0) == (lab[w, i] == lab[w, j])


def test_shift_mask_all_zero_without_shift():
    mask = shift_attention_mask(12, 12, 4, 0)
    assert mask.shape == (9, 16, 16) and torch.all(mask == 0)
    block = SwinBlock(8, 2, resolution=12, window=4, shift=0, cfg=get_config("micro"))
    assert block.attn_mask is None and block.mask_for(12, 12, torch.device("cpu")) is None


# ----------------------------------------------------------------------------------------------------------------
# Relative position index and bias
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("M", [1, 2, 3, 4, 7])
def test_relative_position_index_brute_force(M):
    index = relative_position_index(M)
    expect = torch.empty(M * M, M * M, dtype=torch.long)
    for i in range(M * M):
        for j in range(M * M):
            (ri, ci), (rj, cj) = divmod(i, M), divmod(j, M)
            expect[i, j] = (ri - rj + M - 1) * (2 * M - 1) + (ci - cj + M - 1)
    assert torch.equal(index, expect)
    assert index.unique().numel() == (2 * M - 1) ** 2  # every table row is used
    assert torch.all(index.diagonal() == (2 * M - 1) ** 2 // 2)  # offset (0, 0) is the centre row


def test_relative_position_bias_gathers_table():
    attn = WindowAttention(dim=8, num_heads=2, window=3)
    bias = attn.relative_position_bias()  # [nH, N, N]
    index = relative_position_index(3)
    for h in range(2):
        for i in range(9):
            for j in range(9):
                assert bias[h, i, j] == attn.relative_position_bias_table[index[i, j], h]


# ----------------------------------------------------------------------------------------------------------------
# Attention: written out == SDPA (values and gradients), with and without the mask
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_mask", [False, True])
def test_written_out_attention_equals_sdpa(with_mask):
    torch.manual_seed(0)
    fused = WindowAttention(dim=16, num_heads=4, window=4, fused=True)
    manual = WindowAttention(dim=16, num_heads=4, window=4, fused=False)
    manual.load_state_dict(fused.state_dict())
    with torch.no_grad():
        fused.relative_position_bias_table.normal_()
        manual.relative_position_bias_table.copy_(fused.relative_position_bias_table)
    mask = shift_attention_mask(8, 8, 4, 2) if with_mask else None  # 4 windows
    x = torch.randn(3 * 4, 16, 16, requires_grad=True)  # 3 images x 4 windows, N = 16 tokens, C = 16
    out_f, out_m = fused(x, mask), manual(x, mask)
    torch.testing.assert_close(out_f, out_m, atol=1e-5, rtol=1e-5)
    g_f = torch.autograd.grad(out_f.square().sum(), [x, fused.relative_position_bias_table])
    g_m = torch.autograd.grad(out_m.square().sum(), [x, manual.relative_position_bias_table])
    for a, b in zip(g_f, g_m):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_attention_written_out_matches_formula():
    q, k, v = torch.randn(3, 2, 5, 4).unbind(0)
    bias = torch.randn(5, 5)
    expect = torch.softmax(q @ k.transpose(-2, -1) / 2.0 + bias, dim=-1) @ v
    torch.testing.assert_close(attention_written_out(q, k, v, bias, scale=0.5), expect)


# ----------------------------------------------------------------------------------------------------------------
# timm interop: identical logits
# ----------------------------------------------------------------------------------------------------------------
def _randomize(model: torch.nn.Module) -> None:
    """Big, distinct values everywhere (bias tables std 1) so that any wrong mapping changes the logits."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def timm_tiny():
    torch.manual_seed(0)
    ref = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).eval()
    _randomize(ref)
    return ref


def test_timm_swin_tiny_identical_logits_and_stage_shapes(timm_tiny):
    x = torch.randn(1, 3, 224, 224)
    shapes = []
    with torch.no_grad():
        expect = timm_tiny(x)
        for fused in (True, False):
            ours = from_timm(timm_tiny, fused_attn=fused).eval()
            assert ours.cfg == get_config("tiny", drop_path_rate=0.0, fused_attn=fused)
            hooks = [s.register_forward_hook(lambda m, i, o: shapes.append(tuple(o[0].shape))) for s in ours.layers]
            diff = (ours(x) - expect).abs().max().item()
            assert diff < 1e-4, (fused, diff)
            for h in hooks:
                h.remove()
    assert expect.abs().max() > 1.0  # the comparison is not between two near-zero outputs
    # per-stage outputs (before merging) of Swin-T at 224: strides 4, 8, 16, 32 and channels C, 2C, 4C, 8C
    assert shapes[:4] == [(1, 56, 56, 96), (1, 28, 28, 192), (1, 14, 14, 384), (1, 7, 7, 768)]
    assert 28_000_000 < sum(p.numel() for p in ours.parameters()) < 28_400_000  # Swin-T: 28M (paper)
    # and back: our weights load strictly into timm
    timm_tiny.load_state_dict(ours_to_timm(ours.state_dict()), strict=True)


@pytest.mark.parametrize("img,patch,window,pad_before_shift", [
    (32, 4, 4, True),  # the mnist config: 8 -> 4 -> 2 (window 4 with shift, then one window, then shrinks to 2)
    (32, 2, 4, True),  # the cifar config: 16 -> 8 -> 4
    (28, 2, 7, True),  # 14 -> 7 -> 4 (merging pads 7 -> 8)
    (36, 2, 7, False),  # 18x18 needs padding to 21 with shift: equal to timm in timm's order (roll, then pad)
])
def test_timm_small_configs_identical_logits(img, patch, window, pad_before_shift):
    torch.manual_seed(0)
    chans = 3 if patch == 2 and img == 32 else 1
    ref = TimmSwin(img_size=img, patch_size=patch, in_chans=chans, num_classes=10, embed_dim=24, depths=(2, 2, 2),
                   num_heads=(2, 4, 8), window_size=window).eval()
    _randomize(ref)
    ours = from_timm(ref, pad_before_shift=pad_before_shift).eval()
    x = torch.randn(3, chans, img, img)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max().item() < 1e-4
        if img == 36:  # our default order (pad, then roll: the mask matches the regions) differs there
            ours_default = from_timm(ref).eval()
            assert (ours_default(x) - ref(x)).abs().max().item() > 1e-3


def test_state_dict_layouts(timm_tiny):
    timm_sd = timm_tiny.state_dict()
    ours_sd = timm_to_ours(timm_sd)
    assert is_timm_state_dict(timm_sd) and not is_timm_state_dict(ours_sd)
    assert "layers.0.downsample.reduction.weight" in ours_sd and "layers.3.downsample.norm.weight" not in ours_sd
    assert "head.weight" in ours_sd and not any("relative_position_index" in k for k in ours_sd)
    assert config_from_state_dict(ours_sd, img_size=224) == get_config("tiny", drop_path_rate=0.0)


def test_patch_merging_official_order_and_padding():
    torch.manual_seed(0)
    ours, ref = PatchMerging(6), TimmPatchMerging(6)
    ref.load_state_dict(ours.state_dict())
    for h, w in ((8, 8), (7, 5)):  # odd sizes are padded bottom/right
        x = torch.randn(2, h, w, 6)
        torch.testing.assert_close(ours(x), ref(x))
        assert ours(x).shape == (2, (h + 1) // 2, (w + 1) // 2, 12)
    # by hand: x0 = (0::2, 0::2), x1 = (1::2, 0::2), x2 = (0::2, 1::2), x3 = (1::2, 1::2)
    ours = PatchMerging(1)
    with torch.no_grad():
        ours.norm.weight.fill_(1.0)
        ours.norm.bias.zero_()
    x = torch.zeros(1, 2, 2, 1)
    x[0, 1, 0, 0] = 1.0  # only the bottom-left pixel (x1) is set
    ln = F.layer_norm(torch.tensor([0.0, 1.0, 0.0, 0.0]), (4,))
    torch.testing.assert_close(ours(x)[0, 0, 0], ours.reduction(ln))


# ----------------------------------------------------------------------------------------------------------------
# Shapes, window rule, padding, stochastic depth
# ----------------------------------------------------------------------------------------------------------------
def test_stage_shapes_mnist():
    model = SwinTransformer(get_config("mnist")).eval()
    with torch.no_grad():
        feats = model.forward_stages(torch.randn(2, 1, 32, 32))
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert [tuple(f.shape) for f in feats] == [(2, 8, 8, 48), (2, 4, 4, 96), (2, 2, 2, 192)]


def test_window_shrinks_and_shift_turns_off():
    cfg = get_config("mnist")  # 8, 4, 2 with window 4
    assert cfg.stage_windows() == [(4, 2), (4, 0), (2, 0)]
    model = SwinTransformer(cfg)
    got = [[(b.window, b.shift) for b in stage.blocks] for stage in model.layers]
    assert got == [[(4, 0), (4, 2)], [(4, 0), (4, 0)], [(2, 0), (2, 0)]]
    assert model.layers[2].blocks[0].attn.relative_position_bias_table.shape == (3 * 3, 12)  # (2*2-1)^2 rows
    assert get_config("mnist", img_size=28, patch_size=2, window_size=7).stage_windows() == [(7, 3), (7, 0), (4, 0)]
    assert get_config("tiny").stage_windows() == [(7, 3), (7, 3), (7, 3), (7, 0)]


def test_padding_for_sizes_that_do_not_divide():
    cfg = get_config("micro", img_size=20, patch_size=2, window_size=4)  # 10x10 padded to 12 with shift; 5x5 -> 8
    assert cfg.stage_resolutions() == [10, 5] and cfg.stage_windows() == [(4, 2), (4, 2)]
    model = SwinTransformer(cfg).eval()
    block = model.layers[0].blocks[1]
    assert block.attn_mask.shape == (9, 16, 16)  # built for the padded 12x12 map
    with torch.no_grad():
        out = model(torch.randn(2, 1, 20, 20))
        odd = model(torch.randn(2, 1, 19, 23))  # other sizes too (patch embed pads, masks built on the fly)
        x = torch.randn(2, 10, 10, cfg.embed_dim)
        assert block(x).shape == x.shape  # cropped back after the padded windows
    assert out.shape == odd.shape == (2, 10) and torch.isfinite(out).all()


def test_stochastic_depth():
    model = SwinTransformer(get_config("micro", drop_path_rate=0.3))
    rates = [b.drop_path.p for s in model.layers for b in s.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3) and rates == sorted(rates)
    x = torch.randn(2, 1, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # no randomness at eval time
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


# ----------------------------------------------------------------------------------------------------------------
# Scripts
# ----------------------------------------------------------------------------------------------------------------
def test_train_learns_digits_and_writes_run(tmp_path):
    # The fast learning test and the smoke run in one: micro Swin on sklearn digits upscaled to 16 px.
    proc = run_script("swin_transformer/train.py", "--dataset", "digits", "--config", "micro",
                      "--epochs", "12", "--batch-size", "32", "--lr", "2e-3", "--warmup-epochs", "1",
                      "--runs-dir", tmp_path, timeout=240)
    run = only_run_dir(tmp_path)
    assert run.name.startswith("digits__swin_micro__1__")
    for name in ("config.json", "metrics.csv", "learning_curve.png", "confusion_matrix.png", "summary.json",
                 "ckpt/best.pt", "ckpt/latest.pt"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_test_acc"] >= 0.9, summary
    assert summary["best_test_acc"] >= summary["final_test_acc"]
    assert summary["swin_config"]["num_classes"] == 10 and summary["swin_config"]["in_chans"] == 1
    best = torch.load(run / "ckpt" / "best.pt", weights_only=False)
    assert best["metric"] == summary["best_test_acc"]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("final test acc") and str(run) in last


def test_same_seed_same_run_and_finetune(tmp_path):
    common = ("--dataset", "digits", "--config", "micro", "--epochs", "1", "--max-batches", "3",
              "--test-subset", "64")
    runs = []
    for name in ("a", "b"):
        run_script("swin_transformer/train.py", *common, "--runs-dir", tmp_path, "--run-name", name)
        runs.append(torch.load(tmp_path / name / "ckpt" / "latest.pt", weights_only=False)["model"])
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    # fine-tune from our checkpoint and from a timm state_dict with 7 classes and 3 input channels: new 10-class head
    ref = TimmSwin(img_size=16, patch_size=4, in_chans=3, num_classes=7, embed_dim=32, depths=(2, 2),
                   num_heads=(2, 4), window_size=2)
    torch.save(ref.state_dict(), tmp_path / "timm_micro.pth")
    for source, name in ((tmp_path / "a" / "ckpt" / "best.pt", "ft_ours"), (tmp_path / "timm_micro.pth", "ft_timm")):
        proc = run_script("swin_transformer/train.py", *common, "--finetune", source, "--runs-dir", tmp_path,
                          "--run-name", name)
        assert "fine-tuning from" in proc.stdout
        model = torch.load(tmp_path / name / "ckpt" / "latest.pt", weights_only=False)["model"]
        assert model["head.weight"].shape == (10, 64) and model["patch_embed.proj.weight"].shape[1] == 1
    assert "stem 3 -> 1 channels" in proc.stdout


@pytest.mark.parametrize("args,message", [
    (("--dataset", "mnist", "--data-dir", "/nonexistent/mnist"), "data folder not found"),
    (("--config", "huge"), "unknown config"),
    (("--finetune", "/nonexistent/ckpt.pt"), "checkpoint not found"),
    (("--finetune", "timm:no_such_swin_model"), "cannot load pretrained timm model"),  # offline: fails in seconds
])
def test_bad_input_is_one_error_line(args, message):
    proc = run_script("swin_transformer/train.py", *args, check=False, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr


def test_visualize_and_bench_smoke(tmp_path):
    proc = run_script("swin_transformer/visualize.py", "--out-dir", tmp_path)
    for name in ("shift_mask.png", "relative_position_index.png", "relative_position_bias.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert proc.stdout.startswith("figures:")
    proc = run_script("swin_transformer/bench_speed.py", "--config", "micro", "--batch-size", "8", "--repeats", "2",
                      "--warmup", "1", "--out", tmp_path / "bench.json")
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["ours_images_per_s"] > 0 and result["timm_images_per_s"] > 0
    assert "x timm" in proc.stdout.strip().splitlines()[-1]
