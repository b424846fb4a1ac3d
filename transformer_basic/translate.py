"""Decode with a trained checkpoint: greedy or beam search (with length penalty), scores, attention heat maps.

    python transformer_basic/translate.py --checkpoint runs/<run>/ckpt/best.pt --text "le 3 mars 1998"
    python transformer_basic/translate.py --checkpoint runs/<run>/ckpt/best.pt --eval-split test --beam-size 4
    python transformer_basic/translate.py --checkpoint ... --input-file sentences.txt --beam-size 1   # = greedy

Greedy decoding picks argmax_y p(y_t | y_<t, x) one token at a time. Beam search keeps the ``beam_size`` best
partial hypotheses by summed log-probability and ranks finished ones by log p(Y|X) / lp(Y) with the GNMT length
penalty lp(Y) = ((5 + |Y|) / 6)^α (Wu et al. 2016): without it (α = 0) beam search prefers short outputs, since
every extra token adds a negative log-probability. With beam size 1 it reduces exactly to greedy (tested).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from transformer_basic.data import (  # noqa: E402
    BOS,
    EOS,
    PAD,
    DataConfig,
    Tokenizer,
    encode_pairs,
    load_pairs,
    pad_batch,
    tokenizer_from_state,
)
from transformer_basic.model import Transformer, TransformerConfig  # noqa: E402

BLEU_TOKENIZE = {"date": "13a", "files": "13a", "copy": "char", "reverse": "char"}  # copy/reverse have no spaces


# ----------------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------------
def _strip(seq: list[int]) -> list[int]:
    """Drop BOS and everything from the first EOS on."""
    out = []
    for t in seq[1:]:
        if t in (EOS, PAD):
            break
        out.append(t)
    return out


@torch.no_grad()
def greedy_decode(model: Transformer, src: torch.Tensor, max_len: int) -> list[list[int]]:
    """src [B, S] -> B token lists (no BOS/EOS). The encoder runs once; the decoder re-reads the growing prefix
    (no KV cache: simpler, and outputs here are short)."""
    memory, src_mask = model.encode(src)  # [B, S, D], [B, 1, 1, S]
    ys = torch.full((src.size(0), 1), BOS, dtype=torch.long, device=src.device)  # [B, 1]
    done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    for _ in range(max_len - 1):
        next_tok = model.decode(ys, memory, src_mask)[:, -1].argmax(dim=-1)  # [B]
        next_tok = next_tok.masked_fill(done, PAD)  # finished rows only grow padding (masked as keys)
        ys = torch.cat([ys, next_tok[:, None]], dim=1)  # [B, t + 1]
        done |= next_tok == EOS
        if done.all():
            break
    return [_strip(row) for row in ys.tolist()]


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ((5 + |Y|) / 6)^α; α = 0 gives 1 (plain log-probability)."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def beam_search(model: Transformer, src: torch.Tensor, beam_size: int = 4, max_len: int = 64,
                alpha: float = 0.6) -> list[int]:
    """One source sentence src [1, S] -> best token list (no BOS/EOS).

    Each step scores all K×V one-token extensions of the K live hypotheses, keeps the best K that do not end in
    EOS alive and moves those that do into ``finished``; it stops once K hypotheses have finished (or at max_len)
    and returns the finished hypothesis with the best length-normalised score."""
    memory, src_mask = model.encode(src)  # [1, S, D]
    live: list[tuple[list[int], float]] = [([BOS], 0.0)]
    finished: list[tuple[list[int], float]] = []
    for _ in range(max_len - 1):
        k = len(live)
        ys = torch.tensor([seq for seq, _ in live], device=src.device)  # [K, t]
        logp = model.decode(ys, memory.expand(k, -1, -1), src_mask.expand(k, -1, -1, -1))[:, -1].log_softmax(-1)
        scores = torch.tensor([s for _, s in live], device=src.device)[:, None] + logp  # [K, V]
        vocab = scores.size(1)
        top = scores.view(-1).topk(min(2 * beam_size, scores.numel()))  # 2K: enough to refill K after EOS ends
        new_live = []
        for score, idx in zip(top.values.tolist(), top.indices.tolist()):
            beam, tok = divmod(idx, vocab)
            seq = live[beam][0] + [tok]
            (finished if tok == EOS else new_live).append((seq, score))
            if len(new_live) == beam_size:
                break
        live = new_live
        if len(finished) >= beam_size or not live:
            break
    pool = finished or live
    best = max(pool, key=lambda h: h[1] / length_penalty(len(_strip(h[0])) + 1, alpha))  # +1: EOS counts
    return _strip(best[0])


def decode_texts(model: Transformer, tok: Tokenizer, texts: list[str], max_len: int, beam_size: int = 1,
                 alpha: float = 0.6, batch_size: int = 256) -> list[str]:
    """Texts in, decoded texts out. beam_size 1 -> batched greedy; > 1 -> beam search sentence by sentence."""
    device = next(model.parameters()).device
    model.eval()
    enc = [s for s, _ in encode_pairs([(t, "") for t in texts], tok, max_len)]
    out: list[str] = []
    if beam_size <= 1:
        for i in range(0, len(enc), batch_size):
            out += [tok.decode(ids) for ids in greedy_decode(model, pad_batch(enc[i:i + batch_size]).to(device),
                                                            max_len)]
        return out
    for ids in enc:
        src = torch.tensor([ids], device=device)
        out.append(tok.decode(beam_search(model, src, beam_size, max_len, alpha)))
    return out


def score(hyps: list[str], refs: list[str], bleu_tokenize: str = "13a") -> dict[str, float]:
    """Exact-match accuracy (%) and corpus BLEU (sacrebleu; nan when it is not installed)."""
    exact = 100.0 * sum(h == r for h, r in zip(hyps, refs)) / max(len(refs), 1)
    try:
        import sacrebleu
    except ImportError:
        print("note: pip install sacrebleu for BLEU", file=sys.stderr)
        return {"exact_match": exact, "bleu": math.nan}
    bleu = sacrebleu.corpus_bleu(hyps, [refs], tokenize=bleu_tokenize).score
    return {"exact_match": exact, "bleu": bleu}


# ----------------------------------------------------------------------------------------------------------------
# Attention heat map
# ----------------------------------------------------------------------------------------------------------------
def token_labels(tok: Tokenizer, ids: list[int]) -> list[str]:
    names = {BOS: "<bos>", EOS: "<eos>", PAD: "<pad>"}
    return [names.get(i) or tok.decode([i]).replace(" ", "␣") or "·" for i in ids]


@torch.no_grad()
def plot_attention(model: Transformer, tok: Tokenizer, src_text: str, hyp_text: str, out: Path,
                   max_len: int) -> Path:
    """Heat maps of the last decoder layer's encoder–decoder attention (one panel per head) for one sample:
    row t shows where the decoder looked in the source while producing output token t."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    device = next(model.parameters()).device
    src_ids = tok.encode(src_text)[:max_len]
    tgt_ids = [BOS] + tok.encode(hyp_text)[: max_len - 2]
    model.eval().keep_attention_weights(True)
    model(torch.tensor([src_ids], device=device), torch.tensor([tgt_ids], device=device))
    weights = model.decoder[-1].cross_attn.weights[0].cpu()  # [H, T, S]
    model.keep_attention_weights(False)
    heads = weights.size(0)
    fig, axes = plt.subplots(1, heads, figsize=(2.4 + 0.22 * len(src_ids) * heads, 1.2 + 0.25 * len(tgt_ids)),
                             squeeze=False)
    ylabels = token_labels(tok, tgt_ids[1:] + [EOS])  # query t predicts token t+1
    for h, ax in enumerate(axes[0]):
        ax.imshow(weights[h], cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(src_ids)), token_labels(tok, src_ids), fontsize=7, rotation=90)
        ax.set_yticks(range(len(ylabels)), ylabels if h == 0 else [""] * len(ylabels), fontsize=7)
        ax.set_title(f"head {h + 1}", fontsize=8)
    fig.suptitle(f"cross-attention, last decoder layer: {src_text!r} -> {hyp_text!r}", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Loading a checkpoint
# ----------------------------------------------------------------------------------------------------------------
def load_model(path: str, device: torch.device) -> tuple[Transformer, Tokenizer, dict]:
    """(model in eval mode, tokenizer, checkpoint dict) from a train.py checkpoint."""
    ckpt = rl_utils.load_checkpoint(path)
    if "model_cfg" not in ckpt or "tokenizer" not in ckpt:
        raise rl_utils.UsageError(f"{path} is not a transformer_basic/train.py checkpoint")
    model = Transformer(TransformerConfig(**ckpt["model_cfg"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), tokenizer_from_state(ckpt["tokenizer"]), ckpt


@dataclass
class Args:
    """Translate with a transformer_basic checkpoint: greedy or beam search, scores and attention heat map."""

    checkpoint: str = ""
    """checkpoint written by train.py (e.g. runs/<run>/ckpt/best.pt)"""
    text: str = ""
    """sentence(s) to translate; separate several with ' || '"""
    input_file: str = ""
    """file with one sentence per line to translate"""
    eval_split: str = ""
    """valid or test: score the checkpoint's own split (regenerated from its data seed) with greedy AND beam"""
    limit: int = 0
    """with --eval-split, score only the first N examples (0 = all)"""
    beam_size: int = 4
    """beam width (1 = greedy)"""
    length_penalty: float = 0.6
    """GNMT length-penalty exponent α (0 = rank by plain log-probability)"""
    max_len: int = 0
    """longest output in tokens (0 = the checkpoint's --max-len)"""
    attention_png: str = ""
    """where to save the attention heat map of the first sentence (default: <run>/attention.png; 'none' = off)"""
    fast_attention: bool = True
    """decode through F.scaled_dot_product_attention (the heat map always uses the written-out path)"""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda"""
    torch_threads: int = 1
    """torch CPU threads (1 is fastest on a shared 2-core machine)"""


def main() -> None:
    args = rl_utils.parse_args(Args)
    if not args.checkpoint:
        raise rl_utils.UsageError("--checkpoint PATH is required")
    if args.eval_split not in ("", "valid", "test"):
        raise rl_utils.UsageError(f"--eval-split must be valid or test, got {args.eval_split!r}")
    if args.beam_size < 1:
        raise rl_utils.UsageError(f"--beam-size must be >= 1, got {args.beam_size}")
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    device = rl_utils.pick_device(args.device)
    model, tok, ckpt = load_model(args.checkpoint, device)
    model.set_fast_attention(args.fast_attention)
    max_len = args.max_len or ckpt["args"]["max_len"]
    task = ckpt["data_cfg"]["task"]

    texts = [t.strip() for t in args.text.split(" || ") if t.strip()]
    if args.input_file:
        if not Path(args.input_file).is_file():
            raise rl_utils.UsageError(f"--input-file: file not found: {args.input_file}")
        texts += [t.strip() for t in Path(args.input_file).read_text(encoding="utf-8").splitlines() if t.strip()]
    if not texts and not args.eval_split:
        # Nothing given: show a few test examples.
        texts = [s for s, _ in load_pairs(DataConfig(**ckpt["data_cfg"]))[2][:5]]

    sample_src, sample_hyp = None, None
    if texts:
        hyps = decode_texts(model, tok, texts, max_len, args.beam_size, args.length_penalty)
        for src, hyp in zip(texts, hyps):
            print(f"{src}  ->  {hyp}")
        sample_src, sample_hyp = texts[0], hyps[0]

    line = f"translated {len(texts)} sentence(s) with beam size {args.beam_size}"
    if args.eval_split:
        pairs = load_pairs(DataConfig(**ckpt["data_cfg"]))[1 if args.eval_split == "valid" else 2]
        pairs = pairs[: args.limit] if args.limit else pairs
        srcs, refs = [s for s, _ in pairs], [t for _, t in pairs]
        results = {}
        for beam in sorted({1, args.beam_size}):
            hyps = decode_texts(model, tok, srcs, max_len, beam, args.length_penalty)
            results[beam] = score(hyps, refs, BLEU_TOKENIZE.get(task, "13a"))
            name = "greedy" if beam == 1 else f"beam {beam} (α={args.length_penalty})"
            print(f"{args.eval_split} {name:18}: exact match {results[beam]['exact_match']:6.2f}% | "
                  f"BLEU {results[beam]['bleu']:6.2f} | {len(pairs)} examples")
            if sample_src is None:
                sample_src, sample_hyp = srcs[0], hyps[0]
        best = results[args.beam_size]
        line = (f"{args.eval_split} exact match {best['exact_match']:.2f}%, BLEU {best['bleu']:.2f} "
                f"(beam {args.beam_size}) on {len(pairs)} {task} examples")

    if args.attention_png != "none" and sample_src is not None:
        out = Path(args.attention_png) if args.attention_png else Path(args.checkpoint).resolve().parents[1] / \
            "attention.png"
        print(f"attention heat map: {plot_attention(model, tok, sample_src, sample_hyp, out, max_len)}")
    print(line)


if __name__ == "__main__":
    rl_utils.run_main(main)
