"""Train the from-scratch Transformer (model.py) on an offline seq2seq task, fully offline.

    python transformer_basic/train.py                              # date normalisation, ~99.9% exact match
    python transformer_basic/train.py --task reverse               # or copy
    python transformer_basic/train.py --train-src de.txt --train-tgt en.txt --tokenizer bpe --vocab-size 8000
    python transformer_basic/translate.py --checkpoint runs/<run>/ckpt/best.pt --eval-split test --beam-size 4

Teacher forcing: the decoder reads the target shifted right (BOS y1 .. y_{n-1}) and is trained with
label-smoothed cross-entropy to predict (y1 .. y_n EOS) at every position in parallel; the causal mask makes
this equal to predicting each token from its true prefix. Adam (β2 = 0.98, ε = 1e-9) with the Noam warm-up
schedule, as in §5.3 of the paper. Every --eval-every steps: validation loss and greedy exact match; the best
checkpoint by validation exact match is scored on the test split at the end (exact match and sacrebleu BLEU).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import dl_utils  # noqa: E402
import rl_utils  # noqa: E402
from transformer_basic.data import (  # noqa: E402
    PAD,
    DataConfig,
    batches,
    encode_pairs,
    load_pairs,
    pad_batch,
    tokenizer_from_state,
    train_tokenizer,
)
from transformer_basic.model import (  # noqa: E402
    Transformer,
    TransformerConfig,
    count_parameters,
    label_smoothed_loss,
    noam_lambda,
)
from transformer_basic.translate import BLEU_TOKENIZE, decode_texts, score  # noqa: E402


@dataclass
class Args(dl_utils.TrainArgs):
    """Train an encoder-decoder Transformer on dates, copy, reverse, or your parallel text files."""

    task: str = "date"
    """date (human dates in en/fr/de/es -> ISO), copy, reverse, or files (set automatically by --train-src)"""
    data_seed: int = 0
    """seed of the generated data and of carving valid/test from --train-src (fixed across model seeds)"""
    n_train: int = 50_000
    """generated training examples"""
    n_valid: int = 1_000
    """generated validation examples (also the size carved from --train-src when no --valid-src)"""
    n_test: int = 2_000
    """generated test examples"""
    min_seq_len: int = 4
    """copy/reverse: shortest string"""
    max_seq_len: int = 16
    """copy/reverse: longest string"""
    n_symbols: int = 16
    """copy/reverse: alphabet size"""
    train_src: str = ""
    """parallel text: training source file, one sentence per line (switches --task to files)"""
    train_tgt: str = ""
    """parallel text: training target file"""
    valid_src: str = ""
    """parallel text: validation source file (optional; carved from train otherwise)"""
    valid_tgt: str = ""
    """parallel text: validation target file"""
    test_src: str = ""
    """parallel text: test source file (optional; carved from train otherwise)"""
    test_tgt: str = ""
    """parallel text: test target file"""
    tokenizer: str = "char"
    """char, or bpe (HF tokenizers, trained locally on the training split)"""
    vocab_size: int = 0
    """tokenizer vocabulary size (0 = every character for char, 8000 for bpe)"""
    max_len: int = 64
    """longest sequence in tokens (longer ones are truncated); also the decoding limit"""

    d_model: int = 128
    """model width"""
    n_heads: int = 4
    """attention heads"""
    n_enc_layers: int = 2
    """encoder layers"""
    n_dec_layers: int = 2
    """decoder layers"""
    d_ff: int = 256
    """feed-forward hidden width (2 x d_model: half the paper's ratio, to train faster on a CPU)"""
    dropout: float = 0.0
    """dropout on embeddings, attention weights and sub-layer outputs (paper: 0.1). 0 for the generated tasks:
    their data are plentiful and never repeat the test dates, and dropout doubles the step time on this CPU"""
    norm_first: bool = False
    """pre-norm residual blocks (default post-norm, as in the paper)"""
    learned_pos: bool = False
    """learned position embeddings instead of sinusoids"""
    share_embeddings: bool = True
    """one embedding table for source and target (the vocabulary is joint)"""
    tie_output: bool = True
    """output projection shares the target embedding matrix"""
    fast_attention: bool = True
    """F.scaled_dot_product_attention (fused) instead of the written-out attention; same weights and results"""

    batch_size: int = 64
    """sentence pairs per step"""
    max_steps: int = 20_000
    """optimizer steps (training stops at --max-steps or --time-budget, whichever comes first)"""
    time_budget: float = 600.0
    """seconds of training (evaluation excluded) before stopping (0 = no limit)"""
    lr_factor: float = 1.0
    """Noam schedule: lr = factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)"""
    warmup: int = 400
    """Noam warm-up steps"""
    cooldown_steps: int = 0
    """scale the Noam lr linearly down to 0 over the last N steps of --max-steps (0 = off, as in the paper): the
    1/sqrt(step) tail stays large enough to make exact-match accuracy oscillate by a few points"""
    label_smoothing: float = 0.1
    """ε of label smoothing (paper: 0.1)"""
    max_grad_norm: float = 1.0
    """gradient-norm clipping (0 = off)"""
    eval_every: int = 250
    """steps between validation (loss + greedy exact match); 0 = only at the end"""
    eval_examples: int = 500
    """validation examples decoded at each evaluation"""
    target_acc: float = math.nan
    """stop early once validation exact match (%) reaches this (nan = never)"""


    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "batch_size": (1, None), "max_len": (4, None), "d_model": (1, None), "n_heads": (1, None),
        "n_enc_layers": (1, None), "n_dec_layers": (1, None), "d_ff": (1, None), "max_steps": (1, None),
        "dropout": (0, 1), "label_smoothing": (0, 1), "time_budget": (0, None), "warmup": (1, None),
        "cooldown_steps": (0, None), "max_grad_norm": (0, None), "eval_every": (0, None), "eval_examples": (1, None)}


@dataclass
class Progress:
    """The counters a checkpoint carries (restored by ``rl_utils.Run.restore``)."""

    step: int = 0
    best_acc: float = -1.0
    last_acc: float = math.nan
    last_eval_step: int = -1
    train_time: float = 0.0
    tokens: int = 0


class BatchStream:
    """Endless shuffled passes over the training pairs (the batch order of ``data.batches`` with one generator),
    resumable inside a pass: the state is the generator's state at the start of the current pass plus the number of
    batches already taken from it."""

    def __init__(self, examples: list, batch_size: int, seed: int):
        self.examples, self.batch_size = examples, batch_size
        self.rng = np.random.default_rng(seed)
        self.pass_start, self.position = self.rng.bit_generator.state, 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            self.rng.bit_generator.state = self.pass_start
            order = self.rng.permutation(len(self.examples))
            for i in range(self.position * self.batch_size, len(order), self.batch_size):
                chunk = [self.examples[j] for j in order[i:i + self.batch_size]]
                self.position += 1  # counted before it is used: a checkpoint after this step resumes at the next
                yield pad_batch([src for src, _ in chunk]), pad_batch([tgt for _, tgt in chunk])
            self.pass_start, self.position = self.rng.bit_generator.state, 0

    def state_dict(self) -> dict:
        return {"pass_start": self.pass_start, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.pass_start, self.position = state["pass_start"], int(state["position"])


# Tuned defaults per task, applied unless the flag is typed. Copy/reverse are easy: a shorter run suffices.
PRESETS: dict[str, dict[str, object]] = {
    "copy": dict(max_steps=2_000, cooldown_steps=600, time_budget=0.0, n_train=20_000, max_seq_len=10, n_symbols=10),
    "reverse": dict(max_steps=2_000, cooldown_steps=600, time_budget=0.0, n_train=20_000, max_seq_len=10,
                    n_symbols=10),
}


def build_model(args: Args, vocab: int) -> Transformer:
    cfg = TransformerConfig(
        src_vocab=vocab, tgt_vocab=vocab, d_model=args.d_model, n_heads=args.n_heads,
        n_enc_layers=args.n_enc_layers, n_dec_layers=args.n_dec_layers, d_ff=args.d_ff, dropout=args.dropout,
        max_len=args.max_len, norm_first=args.norm_first, learned_pos=args.learned_pos,
        share_embeddings=args.share_embeddings, tie_output=args.tie_output, fast_attention=args.fast_attention,
        pad_id=PAD,
    )
    return Transformer(cfg)


def check_args(args: Args) -> Args:
    if args.train_src or args.train_tgt:
        if args.task not in ("date", "files"):
            raise rl_utils.UsageError(f"--train-src/--train-tgt go with --task files, not --task {args.task}")
        args.task = "files"
    if args.d_model % args.n_heads:
        raise rl_utils.UsageError(f"--d-model {args.d_model} must be divisible by --n-heads {args.n_heads}")
    return args


def data_config(args: Args) -> DataConfig:
    return DataConfig(**{f.name: getattr(args, f.name if f.name != "seed" else "data_seed")
                         for f in dataclasses.fields(DataConfig)})


@torch.no_grad()
def validation_loss(model: Transformer, examples: list, batch_size: int, device: torch.device) -> float:
    """Mean per-token cross-entropy (no smoothing) under teacher forcing."""
    model.eval()
    total, count = 0.0, 0
    for src, tgt in batches(examples, batch_size):
        src, tgt = src.to(device), tgt.to(device)
        logits = model(src, tgt[:, :-1])  # [B, T-1, V]
        n = int((tgt[:, 1:] != PAD).sum())
        total += label_smoothed_loss(logits.flatten(0, 1), tgt[:, 1:].flatten(), 0.0, PAD).item() * n
        count += n
    return total / max(count, 1)


def plot_learning_curve(run_dir: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for tag, label in (("train/loss", "train (label-smoothed)"), ("valid/loss", "valid")):
        steps, values, _ = rl_utils.read_metrics(run_dir, tag)
        if len(steps):
            ax1.plot(steps, values if tag != "train/loss" else rl_utils.moving_average(values, 10), label=label)
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy per token")
    ax1.legend(fontsize=8)
    steps, values, _ = rl_utils.read_metrics(run_dir, "valid/exact_match")
    ax2.plot(steps, values, marker="o", ms=3)
    ax2.set_xlabel("step")
    ax2.set_ylabel("valid exact match (%), greedy")
    ax2.set_ylim(0, 101)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = run_dir / "learning_curve.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args, presets=PRESETS, preset_key="task")
    args = check_args(args)
    device = rl_utils.setup(args)

    # ---- data: text pairs -> tokenizer trained on the training split only (or the checkpoint's) -> id sequences
    print(f"{args.task}: preparing the data and the tokenizer ...", flush=True)
    dcfg = data_config(args)
    train_pairs, valid_pairs, test_pairs = load_pairs(dcfg)
    tok = tokenizer_from_state(ckpt["tokenizer"]) if ckpt is not None else \
        train_tokenizer(args.tokenizer, [s for pair in train_pairs for s in pair], args.vocab_size)
    train_ex = encode_pairs(train_pairs, tok, args.max_len)
    valid_ex = encode_pairs(valid_pairs, tok, args.max_len)
    valid_eval = valid_pairs[: args.eval_examples]
    bleu_tok = BLEU_TOKENIZE[args.task]

    # ---- model and optimiser
    model = build_model(args, len(tok)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    noam = noam_lambda(args.d_model, args.warmup, args.lr_factor)
    cooldown = args.cooldown_steps

    def lr_at(step: int) -> float:
        if cooldown and step > args.max_steps - cooldown:
            return noam(step) * max(0.0, (args.max_steps - step) / cooldown)
        return noam(step)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    n_params = count_parameters(model)
    print(f"{args.task}: {len(train_pairs)} train / {len(valid_pairs)} valid / {len(test_pairs)} test pairs, "
          f"{args.tokenizer} vocabulary {len(tok)}, model {n_params / 1e6:.2f}M parameters, device {device}")
    print("example:", repr(train_pairs[0][0]), "->", repr(train_pairs[0][1]))

    run = rl_utils.Run(args, "transformer", resume=ckpt, task=args.task)
    progress = Progress()
    stream = BatchStream(train_ex, args.batch_size, args.seed)  # batch order
    objects = dict(model=model, optimizer=optimizer, scheduler=scheduler, batches=stream, progress=progress)
    if ckpt is not None:
        rl_utils.Run.restore(ckpt, **objects)
    saved = dict(model_cfg=dataclasses.asdict(model.cfg), tokenizer=tok.state(), data_cfg=dataclasses.asdict(dcfg))

    def checkpoint(name: str) -> Path:
        return run.save(name, progress.step, **objects, **saved)

    def run_eval(step: int) -> float:
        t0 = time.time()
        loss = validation_loss(model, valid_ex, 256, device)
        hyps = decode_texts(model, tok, [s for s, _ in valid_eval], args.max_len)
        acc = score(hyps, [t for _, t in valid_eval], bleu_tok)["exact_match"]
        run.log_dict({"valid/loss": loss, "valid/exact_match": acc}, step)
        progress.last_acc, progress.last_eval_step = acc, step
        if acc >= progress.best_acc:  # ties: keep the later (longer-trained) network
            progress.best_acc = acc
            checkpoint("best")
        tqdm.write(f"step {step:>6d} | valid loss {loss:.4f} | valid exact match {acc:6.2f}% | "
                   f"train {progress.train_time:5.0f}s | eval {time.time() - t0:4.1f}s")
        model.train()
        return acc

    def out_of_time() -> bool:
        return args.time_budget > 0 and progress.train_time >= args.time_budget

    start_step, stopped = progress.step, False
    interrupt = rl_utils.GracefulInterrupt()
    bar = tqdm(total=args.max_steps, initial=progress.step, unit="step", leave=False, dynamic_ncols=True,
               disable=None)
    plain = rl_utils.PlainProgress(bar)  # no terminal, no bar: a plain line now and then
    stream_iter = iter(stream)
    model.train()
    with interrupt.installed():
        while progress.step < args.max_steps and not out_of_time():
            src, tgt = next(stream_iter)
            t0 = time.time()
            src, tgt = src.to(device), tgt.to(device)
            logits = model(src, tgt[:, :-1])  # teacher forcing: [B, T-1, V]
            loss = label_smoothed_loss(logits.flatten(0, 1), tgt[:, 1:].flatten(), args.label_smoothing, PAD)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            tokens = int((src != PAD).sum() + (tgt != PAD).sum())
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt_step = time.time() - t0
            progress.train_time += dt_step
            progress.tokens += tokens
            progress.step += 1
            step = progress.step
            bar.update(1)
            if plain.due():
                print(f"progress: step {step:,}/{args.max_steps:,} | loss {loss.item():.3f} | "
                      f"train {progress.train_time:.0f}s", flush=True)
            if step % 50 == 0 or step == 1:
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                run.log_dict({"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0],
                              "charts/tokens_per_s": tokens / max(dt_step, 1e-9)}, step)
            due = args.eval_every and step % args.eval_every == 0 and not out_of_time() and step < args.max_steps
            if due and run_eval(step) >= args.target_acc:
                tqdm.write(f"target validation exact match {args.target_acc}% reached at step {step}")
                break
            if interrupt.requested or start_step < args.stop_after <= step:
                stopped = True
                break
    bar.close()

    step = progress.step
    if stopped:
        latest = checkpoint("latest")
        run.close()
        print(f"stopped at step {step}; resume with: python {sys.argv[0]} --resume {latest}")
        return
    if progress.last_eval_step != step:
        run_eval(step)  # always evaluate the final network too
    checkpoint("latest")

    # ---- test: the best checkpoint by validation exact match, greedy decoding
    best = rl_utils.load_checkpoint(run.ckpt_dir / "best.pt")
    model.load_state_dict(best["model"])
    t0 = time.time()
    hyps = decode_texts(model, tok, [s for s, _ in test_pairs], args.max_len)
    test = score(hyps, [t for _, t in test_pairs], bleu_tok)
    run.log_dict({"test/exact_match": test["exact_match"], "test/bleu": test["bleu"]}, step)
    wrong = [(s, h, t) for (s, t), h in zip(test_pairs, hyps) if h != t][:5]
    for s, h, t in wrong:
        print(f"  wrong: {s!r} -> {h!r} (expected {t!r})")
    run.flush()
    plot_learning_curve(run.run_dir, f"Transformer on {args.task} (seed {args.seed})")
    tokens_per_s = progress.tokens / max(progress.train_time, 1e-9)
    run.write_summary(
        test_exact_match=round(test["exact_match"], 3), test_bleu=round(test["bleu"], 3),
        best_valid_exact_match=progress.best_acc, steps=step, best_step=best["progress"]["step"],
        train_time_s=round(progress.train_time, 1), wall_time_s=round(run.elapsed, 1),
        tokens_per_s=round(tokens_per_s, 1), params=n_params, task=args.task, vocab=len(tok), seed=args.seed,
        test_examples=len(test_pairs), test_decode_s=round(time.time() - t0, 1), device=str(device),
    )
    run.close()
    print(f"test exact match {test['exact_match']:.2f}% | BLEU {test['bleu']:.2f} | {len(test_pairs)} {args.task} "
          f"examples, greedy | {step} steps, {progress.train_time:.0f}s training | run folder: {run.run_dir}")


if __name__ == "__main__":
    rl_utils.run_main(main)
