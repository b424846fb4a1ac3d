"""transformer_basic: our attention and layers equal PyTorch's with copied weights, masks do what they say, the
teaching and fast paths agree, decoding (greedy = beam 1), the data splits, every script as a user runs it, bad
input, and one fast learning test."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rl_utils
from tests.conftest import only_run_dir, run_script
from transformer_basic import data
from transformer_basic.model import (
    DecoderLayer,
    EncoderLayer,
    MultiHeadAttention,
    Transformer,
    TransformerConfig,
    causal_mask,
    label_smoothed_loss,
    noam_lambda,
    padding_mask,
)
from transformer_basic.translate import beam_search, greedy_decode

TRAIN, TRANSLATE = "transformer_basic/train.py", "transformer_basic/translate.py"
BENCH = "transformer_basic/bench_speed.py"
TINY_MODEL = ("--d-model", "32", "--n-heads", "2", "--d-ff", "64", "--n-enc-layers", "1", "--n-dec-layers", "1")
TINY = ("--n-train", "300", "--n-valid", "40", "--n-test", "40", "--max-steps", "12", "--eval-every", "6",
        "--batch-size", "16", "--eval-examples", "20", *TINY_MODEL)
TOL = dict(atol=1e-5, rtol=0)  # the bound: max abs diff < 1e-5


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny ops on a shared 2-core machine: one thread avoids OpenMP threads waiting on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _copy_mha(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    wq, wk, wv = theirs.in_proj_weight.detach().chunk(3)
    bq, bk, bv = theirs.in_proj_bias.detach().chunk(3)
    with torch.no_grad():
        for lin, w, b in ((ours.q_proj, wq, bq), (ours.k_proj, wk, bk), (ours.v_proj, wv, bv)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        ours.out_proj.load_state_dict(theirs.out_proj.state_dict())


def _lengths_mask(lengths: list[int], t: int) -> torch.Tensor:
    """[B, T] True at real tokens."""
    return torch.arange(t)[None] < torch.tensor(lengths)[:, None]


def _tiny_model(fast: bool = False, dropout: float = 0.0, norm_first: bool = False, vocab: int = 13) -> Transformer:
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab, vocab, d_model=32, n_heads=4, n_enc_layers=2, n_dec_layers=2, d_ff=64,
                                         dropout=dropout, norm_first=norm_first, fast_attention=fast,
                                         share_embeddings=True))


def _padded_tokens(lengths: list[int], t: int, vocab: int = 13, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(4, vocab, (len(lengths), t), generator=g)
    return x.masked_fill(~_lengths_mask(lengths, t), data.PAD)


# ---------------------------------------------------------------------------------------------------------------
# Equality with PyTorch (copied weights)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fast", [False, True])
def test_multihead_attention_equals_torch_with_padding_and_causal_masks(fast):
    torch.manual_seed(0)
    d, h, b, t, s = 32, 4, 3, 7, 9
    theirs = nn.MultiheadAttention(d, h, batch_first=True)
    ours = MultiHeadAttention(d, h, fast=fast)
    _copy_mha(ours, theirs)
    x, mem = torch.randn(b, t, d), torch.randn(b, s, d)
    valid_src, valid_tgt = _lengths_mask([9, 5, 2], s), _lengths_mask([7, 4, 1], t)
    # Cross-attention with a key padding mask. PyTorch: True = ignore; ours (as SDPA): True = attend.
    ref, _ = theirs(x, mem, mem, key_padding_mask=~valid_src)
    got = ours(x, mem, mem, valid_src[:, None, None, :])
    assert (got - ref).abs().max() < 1e-5
    # Self-attention with causal + padding masks.
    causal = causal_mask(t)[0, 0]  # [T, T] True = allowed
    ref, _ = theirs(x, x, x, attn_mask=~causal, key_padding_mask=~valid_tgt)
    got = ours(x, x, x, causal[None, None] & valid_tgt[:, None, None, :])
    assert (got - ref).abs().max() < 1e-5
    # The per-head attention weights too (teaching path keeps them).
    ours.keep_weights = True
    ours(x, mem, mem, valid_src[:, None, None, :])
    _, ref_w = theirs(x, mem, mem, key_padding_mask=~valid_src, average_attn_weights=False)
    torch.testing.assert_close(ours.weights, ref_w, **TOL)


def _copy_layer(ours: nn.Module, theirs: nn.Module) -> None:
    _copy_mha(ours.self_attn, theirs.self_attn)
    if hasattr(theirs, "multihead_attn"):
        _copy_mha(ours.cross_attn, theirs.multihead_attn)
    ours.ff.linear1.load_state_dict(theirs.linear1.state_dict())
    ours.ff.linear2.load_state_dict(theirs.linear2.state_dict())
    for name in ("norm1", "norm2", "norm3"):
        if hasattr(theirs, name):
            getattr(ours, name).load_state_dict(getattr(theirs, name).state_dict())


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("fast", [False, True])
def test_encoder_layer_equals_torch(norm_first, fast):
    torch.manual_seed(1)
    theirs = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True, norm_first=norm_first)
    ours = EncoderLayer(32, 4, 64, dropout=0.0, norm_first=norm_first, fast=fast)
    _copy_layer(ours, theirs)
    x, valid = torch.randn(3, 8, 32), _lengths_mask([8, 5, 3], 8)
    # Training mode (dropout is 0): keeps PyTorch off its inference fast path, which zeroes padded rows.
    ref = theirs(x, src_key_padding_mask=~valid)
    got = ours(x, valid[:, None, None, :])
    assert (got - ref).abs().max() < 1e-5


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("fast", [False, True])
def test_decoder_layer_equals_torch(norm_first, fast):
    torch.manual_seed(2)
    theirs = nn.TransformerDecoderLayer(32, 4, 64, dropout=0.0, batch_first=True, norm_first=norm_first)
    ours = DecoderLayer(32, 4, 64, dropout=0.0, norm_first=norm_first, fast=fast)
    _copy_layer(ours, theirs)
    y, mem = torch.randn(3, 6, 32), torch.randn(3, 9, 32)
    valid_tgt, valid_src = _lengths_mask([6, 4, 2], 6), _lengths_mask([9, 3, 6], 9)
    causal = causal_mask(6)[0, 0]
    ref = theirs(y, mem, tgt_mask=~causal, tgt_key_padding_mask=~valid_tgt, memory_key_padding_mask=~valid_src)
    got = ours(y, mem, causal[None, None] & valid_tgt[:, None, None, :], valid_src[:, None, None, :])
    assert (got - ref).abs().max() < 1e-5


# ---------------------------------------------------------------------------------------------------------------
# Masks and paths
# ---------------------------------------------------------------------------------------------------------------
def test_padding_and_future_positions_receive_zero_attention():
    model = _tiny_model().eval().keep_attention_weights(True)
    src, tgt = _padded_tokens([7, 3], 7), _padded_tokens([5, 2], 5, seed=1)
    tgt[:, 0] = data.BOS
    model(src, tgt)
    src_pad = (src == data.PAD)[:, None, None, :]  # [B, 1, 1, S]
    tgt_pad = (tgt == data.PAD)[:, None, None, :]
    future = ~causal_mask(5)
    for layer in model.encoder:
        assert layer.self_attn.weights.masked_select(src_pad.expand_as(layer.self_attn.weights)).eq(0).all()
    for layer in model.decoder:
        w = layer.self_attn.weights  # [B, H, T, T]
        assert w.masked_select((future | tgt_pad).expand_as(w)).eq(0).all()
        c = layer.cross_attn.weights  # [B, H, T, S]
        assert c.masked_select(src_pad.expand_as(c)).eq(0).all()
        torch.testing.assert_close(c.sum(-1), torch.ones_like(c.sum(-1)))  # rows are distributions


@pytest.mark.parametrize("fast", [False, True])
def test_future_target_tokens_do_not_change_earlier_outputs(fast):
    model = _tiny_model(fast=fast).eval()
    src = _padded_tokens([6, 4], 6)
    tgt = _padded_tokens([8, 8], 8, seed=3)
    changed = tgt.clone()
    changed[:, 5:] = torch.randint(4, 13, (2, 3))
    a, b = model(src, tgt), model(src, changed)
    assert (a[:, :5] - b[:, :5]).abs().max() < 1e-6  # positions 0..4 only see tokens 0..4
    assert (a[:, 5:] - b[:, 5:]).abs().max() > 1e-3  # and the later ones do change


def test_extra_source_padding_changes_nothing():
    model = _tiny_model().eval()
    src, tgt = _padded_tokens([5, 3], 5), _padded_tokens([4, 4], 4, seed=2)
    longer = F.pad(src, (0, 4), value=data.PAD)
    assert (model(src, tgt) - model(longer, tgt)).abs().max() < 1e-5


@pytest.mark.parametrize("norm_first", [False, True])
def test_teaching_path_equals_fast_path_forward_and_gradients(norm_first):
    teach, fast = _tiny_model(False, norm_first=norm_first), _tiny_model(True, norm_first=norm_first)
    fast.load_state_dict(teach.state_dict())
    src, tgt = _padded_tokens([7, 5, 2], 7), _padded_tokens([6, 3, 6], 6, seed=4)
    outs = []
    for model in (teach, fast):
        logits = model(src, tgt)
        label_smoothed_loss(logits.flatten(0, 1), tgt.flatten(), 0.1, data.PAD).backward()
        outs.append((logits, [p.grad for p in model.parameters()]))
    assert (outs[0][0] - outs[1][0]).abs().max() < 1e-5
    for ga, gb in zip(outs[0][1], outs[1][1]):
        assert (ga - gb).abs().max() < 1e-5
    teach.set_fast_attention(True)  # one checkpoint, either path
    assert all(m.fast for m in teach.modules() if isinstance(m, MultiHeadAttention))


def test_model_options_tie_and_share_and_learned_positions():
    cfg = TransformerConfig(20, 20, d_model=16, n_heads=2, n_enc_layers=1, n_dec_layers=1, d_ff=32,
                            share_embeddings=True, tie_output=True, learned_pos=True, norm_first=True)
    model = Transformer(cfg)
    assert model.generator.weight is model.tgt_embed.tokens.weight is model.src_embed.tokens.weight
    assert model.src_embed.learned_pos is not None
    assert model(torch.randint(1, 20, (2, 5)), torch.randint(1, 20, (2, 4))).shape == (2, 4, 20)
    assert padding_mask(torch.tensor([[5, 0]]), 0).shape == (1, 1, 1, 2)


def test_label_smoothing_equals_torch_and_noam_schedule():
    torch.manual_seed(0)
    logits, target = torch.randn(10, 7), torch.randint(0, 7, (10,))
    target[:3] = data.PAD
    ref = F.cross_entropy(logits, target, label_smoothing=0.1, ignore_index=data.PAD)
    torch.testing.assert_close(label_smoothed_loss(logits, target, 0.1, data.PAD), ref)
    rate = noam_lambda(128, 400)
    lrs = [rate(s) for s in range(1, 2000)]
    assert int(np.argmax(lrs)) + 1 == 400  # peak at the end of warm-up
    assert abs(rate(400) - 128 ** -0.5 * 400 ** -0.5) < 1e-12


# ---------------------------------------------------------------------------------------------------------------
# Decoding and learning
# ---------------------------------------------------------------------------------------------------------------
def _train_copy(model: Transformer, pairs: list, steps: int, lr: float = 3e-3, batch: int = 64, seed: int = 0):
    tok = data.CharTokenizer.train([s for p in pairs for s in p])
    examples = data.encode_pairs(pairs, tok, 32)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98))
    # 50 warm-up steps, then linear decay to 0: a short run ends with a small lr, so it settles exactly.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * max(0.0, 1 - s / steps))
    rng = np.random.default_rng(seed)
    model.train()
    done = 0
    while done < steps:
        for src, tgt in data.batches(examples, batch, rng):
            loss = label_smoothed_loss(model(src, tgt[:, :-1]).flatten(0, 1), tgt[:, 1:].flatten(), 0.0, data.PAD)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            if done >= steps:
                break
    return tok, loss.item()


def test_overfits_a_tiny_batch():
    pairs = data.symbol_pairs("reverse", 8, 1, 1, seed=0, min_len=3, max_len=6, n_symbols=8)[0]
    model = Transformer(TransformerConfig(12, 12, d_model=32, n_heads=4, n_enc_layers=1, n_dec_layers=1, d_ff=64,
                                          dropout=0.0, fast_attention=True))
    tok, loss = _train_copy(model, pairs, steps=200, lr=1e-2, batch=8)
    assert loss < 0.05
    from transformer_basic.translate import decode_texts

    assert decode_texts(model, tok, [s for s, _ in pairs], 16) == [t for _, t in pairs]


def test_beam_size_one_equals_greedy():
    model = _tiny_model(fast=True).eval()
    src = _padded_tokens([6, 4, 5, 3, 6], 6, seed=5)
    greedy = greedy_decode(model, src, max_len=12)
    for i in range(src.size(0)):
        one = src[i:i + 1, : int((src[i] != data.PAD).sum())]
        assert beam_search(model, one, beam_size=1, max_len=12, alpha=0.6) == greedy[i]
        assert beam_search(model, one, beam_size=1, max_len=12, alpha=0.0) == greedy[i]
    assert all(len(beam_search(model, src[i:i + 1], beam_size=3, max_len=12)) <= 11 for i in range(2))


def test_copy_task_learns_fast():
    """The learning test: a small Transformer copies unseen strings after a few hundred steps. Exact 100% is not a
    property of the method but of one machine's float rounding: measured on the 2-core machine, model seeds 0/1/2
    gave 0.99/0.99/0.91 after 400 steps and 1.00/1.00/0.99 after 600, so 600 steps and >= 98%."""
    torch.manual_seed(0)
    train, _, test = data.symbol_pairs("copy", 4000, 10, 100, seed=1, min_len=3, max_len=6, n_symbols=8)
    model = Transformer(TransformerConfig(12, 12, d_model=32, n_heads=4, n_enc_layers=2, n_dec_layers=2, d_ff=64,
                                          dropout=0.0, fast_attention=True))
    tok, _ = _train_copy(model, train, steps=600, batch=32)
    from transformer_basic.translate import decode_texts

    hyps = decode_texts(model, tok, [s for s, _ in test], 16)
    acc = np.mean([h == t for h, (_, t) in zip(hyps, test)])
    assert acc >= 0.98, acc


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------
def test_date_task_is_reproducible_disjoint_and_multilingual():
    a, b = data.date_pairs(500, 200, 300, seed=3), data.date_pairs(500, 200, 300, seed=3)
    assert a == b and a != data.date_pairs(500, 200, 300, seed=4)
    train, valid, test = a
    dates = [{t for _, t in split} for split in (train, valid, test)]
    assert not (dates[0] & dates[1]) and not (dates[0] & dates[2]) and not (dates[1] & dates[2])
    assert len(dates[2]) == 300  # one example per test date
    for _, tgt in train[:200]:
        dt.date.fromisoformat(tgt)  # a valid ISO date
    text = " ".join(s for s, _ in train)
    assert any(m in text for m in ("mars", "avril", "juin")) and any(m in text for m in ("März", "Januar", "Mai"))
    assert [data.english_ordinal(n) for n in (1, 2, 3, 11, 12, 13, 21, 22, 23)] == \
        ["1st", "2nd", "3rd", "11th", "12th", "13th", "21st", "22nd", "23rd"]
    d = dt.date(1998, 3, 3)
    rendered = {fmt(d) for _, fmt in data.DATE_FORMATS}
    assert {"the 3rd of March, 1998", "3 mars 1998", "3. März 1998", "03/03/1998"} <= rendered
    assert len({lang for lang, _ in data.DATE_FORMATS}) >= 2


def test_copy_reverse_and_tokenizers(tmp_path):
    train, valid, test = data.symbol_pairs("reverse", 300, 50, 50, seed=0)
    assert all(t == s[::-1] for s, t in train)
    assert not ({s for s, _ in train} & {s for s, _ in test}) and not ({s for s, _ in valid} & {s for s, _ in test})
    tok = data.CharTokenizer.train(["hello wörld"])
    assert tok.decode(tok.encode("hello wörld")) == "hello wörld" and tok.encode("z") == [data.UNK]
    bpe = data.train_tokenizer("bpe", ["the cat sat on the mat", "the dog sat"] * 20, 60)
    assert bpe.decode(bpe.encode("the cat sat")) == "the cat sat"
    assert data.tokenizer_from_state(bpe.state()).encode("the mat") == bpe.encode("the mat")
    # Parallel files: missing valid/test are carved from train, disjointly.
    (tmp_path / "a.src").write_text("".join(f"s{i}\n" for i in range(50)))
    (tmp_path / "a.tgt").write_text("".join(f"t{i}\n" for i in range(50)))
    cfg = data.DataConfig(task="files", train_src=str(tmp_path / "a.src"), train_tgt=str(tmp_path / "a.tgt"))
    tr, va, te = data.load_pairs(cfg)
    assert len(tr) + len(va) + len(te) == 50 and not (set(tr) & set(te)) and not (set(va) & set(te))


# ---------------------------------------------------------------------------------------------------------------
# Scripts, as a user runs them
# ---------------------------------------------------------------------------------------------------------------
def test_train_then_translate_smoke_and_same_seed_same_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DLRL_PROGRESS_SECONDS", "0")  # without a terminal: a plain progress line at every step
    proc = run_script(TRAIN, "--runs-dir", tmp_path, *TINY)
    first = proc.stdout.splitlines()[0]
    assert first.startswith("date: preparing the data") and "progress: step 12/" in proc.stdout, proc.stdout[:800]
    run = only_run_dir(tmp_path)
    assert run.name.startswith("date__transformer__1__")
    for name in ("config.json", "metrics.csv", "learning_curve.png", "summary.json", "ckpt/latest.pt", "ckpt/best.pt"):
        assert (run / name).exists(), name
    assert list(run.glob("events.out.tfevents.*"))
    summary = json.loads((run / "summary.json").read_text())
    assert {"test_exact_match", "test_bleu", "steps", "train_time_s", "tokens_per_s"} <= set(summary)
    assert summary["steps"] == 12
    last = proc.stdout.strip().splitlines()[-1]
    assert "test exact match" in last and str(run) in last
    out = run_script(TRANSLATE, "--checkpoint", run / "ckpt/best.pt", "--text", "le 3 mars 1998 || March 4, 2001",
                     "--eval-split", "test", "--limit", "8", "--beam-size", "2")
    assert "test greedy" in out.stdout and "beam 2" in out.stdout and "le 3 mars 1998  ->" in out.stdout
    assert (run / "attention.png").stat().st_size > 1000
    # Same seed -> same run: every logged number except the timings.
    run_script(TRAIN, "--runs-dir", tmp_path / "again", *TINY)

    def numbers(run_dir):
        lines = (run_dir / "metrics.csv").read_text().splitlines()[1:]
        return [line.rsplit(",", 1)[0] for line in lines if "tokens_per_s" not in line]

    assert numbers(run) == numbers(only_run_dir(tmp_path / "again"))


def test_parallel_files_with_bpe_smoke(tmp_path):
    run_script("transformer_basic/data.py", "--task", "date", "--n-train", "200", "--n-valid", "20", "--n-test", "20",
               "--out-dir", tmp_path / "txt")
    d = tmp_path / "txt"
    proc = run_script(TRAIN, "--runs-dir", tmp_path / "runs", "--train-src", d / "train.src", "--train-tgt",
                      d / "train.tgt", "--test-src", d / "test.src", "--test-tgt", d / "test.tgt", "--tokenizer", "bpe",
                      "--vocab-size", "120", "--max-steps", "4", "--eval-every", "0", "--batch-size", "16",
                      *TINY_MODEL)
    assert only_run_dir(tmp_path / "runs").name.startswith("files__transformer__")
    assert "20 files examples" in proc.stdout.strip().splitlines()[-1]


def test_bench_speed_smoke(tmp_path):
    proc = run_script(BENCH, "--batch-size", "4", "--src-len", "8", "--tgt-len", "8", "--d-model", "16",
                      "--n-heads", "2", "--d-ff", "32", "--n-layers", "1", "--steps", "1", "--rounds", "1",
                      "--warmup-steps", "1", "--out", tmp_path / "bench.json")
    assert "nn.Transformer" in proc.stdout and "fast path" in proc.stdout.strip().splitlines()[-1]
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert [r["model"] for r in rows][-1] == "nn.Transformer" and all(r["tokens_per_s"] > 0 for r in rows)


def _one_error_line(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert all(n in lines[0] for n in needles), lines[0]


def test_bad_input_gives_one_error_line(tmp_path):
    _one_error_line(run_script(TRAIN, "--train-src", tmp_path / "missing.de", "--train-tgt", tmp_path / "x.en",
                               check=False), "not found", "missing.de")
    _one_error_line(run_script(TRAIN, "--task", "poetry", check=False), "unknown task", "date, copy, reverse")
    _one_error_line(run_script(TRANSLATE, "--checkpoint", tmp_path / "nope.pt", check=False), "checkpoint not found")


def test_bad_values_are_usage_errors(tmp_path):
    """The same UsageError path as above, checked in-process (each subprocess costs seconds of torch import)."""
    from transformer_basic.train import Args, check_args

    with pytest.raises(rl_utils.UsageError, match="divisible"):
        check_args(Args(d_model=30, n_heads=4))
    with pytest.raises(rl_utils.UsageError, match="--batch-size must be >= 1"):
        rl_utils.check_limits(Args(batch_size=0))  # ranges are declared in Args.LIMITS, checked when parsing
    with pytest.raises(rl_utils.UsageError, match="--task files"):
        check_args(Args(task="copy", train_src="a.txt", train_tgt="b.txt"))
    with pytest.raises(rl_utils.UsageError, match="unknown tokenizer"):
        data.train_tokenizer("words", ["a"])
    (tmp_path / "s.txt").write_text("a\nb\n")
    (tmp_path / "t.txt").write_text("a\n")
    with pytest.raises(rl_utils.UsageError, match="lines but"):
        data.read_parallel(str(tmp_path / "s.txt"), str(tmp_path / "t.txt"), "train")


def test_help_lists_every_flag():
    """A '%' in a field's help text once crashed --help (argparse %-formats it); rl_utils.build_parser escapes it."""
    proc = run_script(TRAIN, "--help", timeout=60)
    assert "--target-acc" in proc.stdout and "exact match (%)" in proc.stdout and "--resume" in proc.stdout
