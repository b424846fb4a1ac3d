"""Offline sequence-to-sequence data: a date-normalisation "translation" task, copy, reverse, or your own files.

* ``date``: human-written dates in English, French, German and Spanish, in 20 formats, to ISO 8601:
  ``"the 3rd of March, 1998"``, ``"mardi 3 mars 1998"``, ``"3. März 1998"``, ``"03/03/1998"`` -> ``"1998-03-03"``.
  Generated from a seed, so every run sees the same data; the *dates* are split (test and valid dates never
  occur in training, in any format), so the splits cannot overlap and the model must compose day, month and year
  instead of memorising strings.
* ``copy`` / ``reverse``: random symbol strings, the classic sanity checks (Annotated Transformer, copy task).
* ``files``: any parallel text (one sentence per line, e.g. Multi30k or IWSLT downloaded elsewhere) through
  ``--train-src/--train-tgt`` [``--valid-*``, ``--test-*``]; missing valid/test splits are carved from train.

Tokenizers are trained locally on the training split only: character level (default; no dependency) or byte-pair
encoding with HF ``tokenizers`` (``--tokenizer bpe``). Source and target share one vocabulary, which makes
``--share-embeddings`` possible. Ids 0..3 are always <pad>, <bos>, <eos>, <unk>.

    python transformer_basic/data.py --task date --out-dir /tmp/dates     # writes {train,valid,test}.{src,tgt}
"""

from __future__ import annotations

import datetime as dt
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import rl_utils  # noqa: E402

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
TASKS = ("date", "copy", "reverse", "files")
Pair = tuple[str, str]


# ----------------------------------------------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------------------------------------------
class CharTokenizer:
    """One id per character seen in training; unseen characters map to <unk>."""

    kind = "char"

    def __init__(self, chars: list[str]):
        self.itos = SPECIALS + chars
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    @classmethod
    def train(cls, texts: list[str], vocab_size: int = 0) -> CharTokenizer:
        counts = Counter(c for t in texts for c in t)
        chars = sorted(counts, key=lambda c: (-counts[c], c))  # frequent first, ties by code point: deterministic
        return cls(chars[: vocab_size - len(SPECIALS)] if vocab_size else chars)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(c, UNK) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.itos[i] for i in ids if i >= len(SPECIALS) or i == UNK).replace("<unk>", "?")

    def state(self) -> dict:
        return {"kind": "char", "chars": self.itos[len(SPECIALS):]}


class BPETokenizer:
    """Byte-pair encoding (Sennrich et al. 2016) trained locally with HF ``tokenizers``. Metaspace pre-tokenizer
    (SentencePiece style: spaces become '▁' inside tokens) so that decode(encode(text)) gives the text back."""

    kind = "bpe"

    def __init__(self, tok):  # a tokenizers.Tokenizer
        self.tok = tok

    @classmethod
    def train(cls, texts: list[str], vocab_size: int = 8000) -> BPETokenizer:
        try:
            from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        except ImportError:
            raise rl_utils.UsageError("--tokenizer bpe needs HF tokenizers: pip install 'tokenizers>=0.15' "
                                      "(or use --tokenizer char)") from None
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    def __len__(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def state(self) -> dict:
        return {"kind": "bpe", "json": self.tok.to_str()}


Tokenizer = CharTokenizer | BPETokenizer


def train_tokenizer(kind: str, texts: list[str], vocab_size: int = 0) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.train(texts, vocab_size)
    if kind == "bpe":
        return BPETokenizer.train(texts, vocab_size or 8000)
    raise rl_utils.UsageError(f"unknown tokenizer {kind!r}; choose from: char, bpe")


def tokenizer_from_state(state: dict) -> Tokenizer:
    """Rebuild a tokenizer saved in a checkpoint (checkpoints are self-contained)."""
    if state["kind"] == "char":
        return CharTokenizer(state["chars"])
    from tokenizers import Tokenizer as HFTokenizer

    return BPETokenizer(HFTokenizer.from_str(state["json"]))


# ----------------------------------------------------------------------------------------------------------------
# The date task
# ----------------------------------------------------------------------------------------------------------------
MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"],
    "fr": ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
           "novembre", "décembre"],
    "de": ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"],
    "es": ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
           "noviembre", "diciembre"],
}
WEEKDAYS = {  # Monday first, as date.weekday()
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "fr": ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"],
    "de": ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"],
    "es": ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"],
}


def english_ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _m(lang: str, d: dt.date) -> str:
    return MONTHS[lang][d.month - 1]


def _w(lang: str, d: dt.date) -> str:
    return WEEKDAYS[lang][d.weekday()]


# Each format is (language, function date -> text). Numeric formats are day-first (European) or year-first only:
# mixing in US month-first "03/04/1998" would make some inputs ambiguous, and no model could be 100% right.
DATE_FORMATS: list[tuple[str, Callable[[dt.date], str]]] = [
    ("en", lambda d: f"the {english_ordinal(d.day)} of {_m('en', d)}, {d.year}"),
    ("en", lambda d: f"{_m('en', d)} {d.day}, {d.year}"),
    ("en", lambda d: f"{d.day} {_m('en', d)} {d.year}"),
    ("en", lambda d: f"{_m('en', d)[:3]} {d.day} {d.year}"),
    ("en", lambda d: f"{_w('en', d)}, {_m('en', d)} {english_ordinal(d.day)}, {d.year}"),
    ("en", lambda d: f"{english_ordinal(d.day)} {_m('en', d).lower()} {d.year}"),
    ("en", lambda d: f"{d.year}/{d.month}/{d.day}"),
    ("fr", lambda d: f"{'1er' if d.day == 1 else d.day} {_m('fr', d)} {d.year}"),
    ("fr", lambda d: f"le {d.day} {_m('fr', d)} {d.year}"),
    ("fr", lambda d: f"{_w('fr', d)} {d.day} {_m('fr', d)} {d.year}"),
    ("fr", lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}"),
    ("de", lambda d: f"{d.day}. {_m('de', d)} {d.year}"),
    ("de", lambda d: f"{_w('de', d)}, {d.day}. {_m('de', d)} {d.year}"),
    ("de", lambda d: f"am {d.day}. {_m('de', d)[:3]}. {d.year}"),
    ("de", lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}"),
    ("es", lambda d: f"{d.day} de {_m('es', d)} de {d.year}"),
    ("es", lambda d: f"{_w('es', d)}, {d.day} de {_m('es', d)} de {d.year}"),
    ("es", lambda d: f"el {d.day} de {_m('es', d)} del {d.year}"),
    ("es", lambda d: f"{d.day}-{d.month}-{d.year}"),
    ("en", lambda d: f"{_m('en', d).upper()} {d.day} {d.year}"),
]
FIRST_DATE, LAST_DATE = dt.date(1900, 1, 1), dt.date(2099, 12, 31)


def date_pairs(n_train: int, n_valid: int, n_test: int, seed: int) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """(train, valid, test) lists of (human date, ISO date). The 73,049 dates of 1900–2099 are shuffled once and
    cut into disjoint pools: test and valid get one example per date, train samples its pool with replacement."""
    rng = np.random.default_rng(seed)
    n_days = (LAST_DATE - FIRST_DATE).days + 1
    order = rng.permutation(n_days)
    if n_test + n_valid >= n_days // 2:
        raise rl_utils.UsageError(f"--n-test + --n-valid must be below {n_days // 2} (half of the dates)")
    pools = order[:n_test], order[n_test:n_test + n_valid], order[n_test + n_valid:]

    def make(days: np.ndarray) -> list[Pair]:
        formats = rng.integers(0, len(DATE_FORMATS), size=len(days))
        out = []
        for day, f in zip(days, formats):
            d = FIRST_DATE + dt.timedelta(days=int(day))
            out.append((DATE_FORMATS[f][1](d), d.isoformat()))
        return out

    test, valid = make(pools[0]), make(pools[1])
    train = make(rng.choice(pools[2], size=n_train, replace=True))
    return train, valid, test


# ----------------------------------------------------------------------------------------------------------------
# Copy and reverse
# ----------------------------------------------------------------------------------------------------------------
def symbol_pairs(task: str, n_train: int, n_valid: int, n_test: int, seed: int, min_len: int = 4, max_len: int = 16,
                 n_symbols: int = 16) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Random strings over the first ``n_symbols`` lower-case letters; target = the string (copy) or reversed.
    Strings are unique across splits (test first, then valid, then train, rejecting repeats)."""
    if not 1 <= n_symbols <= 26:
        raise rl_utils.UsageError(f"--n-symbols must be in 1..26, got {n_symbols}")
    rng = np.random.default_rng(seed)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz"[:n_symbols]))
    seen: set[str] = set()

    def make(n: int, unique: bool) -> list[Pair]:
        out, tries = [], 0
        while len(out) < n:
            tries += 1
            if tries > 50 * n + 1000:
                raise rl_utils.UsageError("cannot draw that many distinct strings; raise --max-seq-len or --n-symbols")
            s = "".join(rng.choice(alphabet, size=int(rng.integers(min_len, max_len + 1))))
            if s in seen:
                continue
            if unique:
                seen.add(s)
            out.append((s, s if task == "copy" else s[::-1]))
        return out

    test, valid = make(n_test, True), make(n_valid, True)
    train = make(n_train, False)  # may repeat itself, never a test/valid string
    return train, valid, test


# ----------------------------------------------------------------------------------------------------------------
# Parallel text files
# ----------------------------------------------------------------------------------------------------------------
def read_lines(path: str, flag: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise rl_utils.UsageError(f"{flag}: file not found: {path}")
    return p.read_text(encoding="utf-8").splitlines()


def read_parallel(src: str, tgt: str, name: str) -> list[Pair]:
    if bool(src) != bool(tgt):
        raise rl_utils.UsageError(f"give both --{name}-src and --{name}-tgt, or neither")
    a, b = read_lines(src, f"--{name}-src"), read_lines(tgt, f"--{name}-tgt")
    if len(a) != len(b):
        raise rl_utils.UsageError(f"--{name}-src has {len(a)} lines but --{name}-tgt has {len(b)}")
    pairs = [(s.strip(), t.strip()) for s, t in zip(a, b) if s.strip() and t.strip()]
    if not pairs:
        raise rl_utils.UsageError(f"--{name}-src/--{name}-tgt contain no non-empty line pairs")
    return pairs


@dataclass
class DataConfig:
    task: str = "date"
    seed: int = 0  # the data seed: fixed by default so every model seed sees the same splits
    n_train: int = 50_000
    n_valid: int = 1_000
    n_test: int = 2_000
    min_seq_len: int = 4  # copy / reverse
    max_seq_len: int = 16
    n_symbols: int = 16
    train_src: str = ""
    train_tgt: str = ""
    valid_src: str = ""
    valid_tgt: str = ""
    test_src: str = ""
    test_tgt: str = ""


def load_pairs(cfg: DataConfig) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """(train, valid, test) text pairs for a task; the one entry point train.py and translate.py use."""
    if cfg.task not in TASKS:
        raise rl_utils.UsageError(f"unknown task {cfg.task!r}; choose from: {', '.join(TASKS)}")
    if cfg.task == "date":
        return date_pairs(cfg.n_train, cfg.n_valid, cfg.n_test, cfg.seed)
    if cfg.task in ("copy", "reverse"):
        return symbol_pairs(cfg.task, cfg.n_train, cfg.n_valid, cfg.n_test, cfg.seed, cfg.min_seq_len,
                            cfg.max_seq_len, cfg.n_symbols)
    if not cfg.train_src:
        raise rl_utils.UsageError("--task files needs --train-src and --train-tgt")
    train = read_parallel(cfg.train_src, cfg.train_tgt, "train")
    valid = read_parallel(cfg.valid_src, cfg.valid_tgt, "valid") if cfg.valid_src or cfg.valid_tgt else []
    test = read_parallel(cfg.test_src, cfg.test_tgt, "test") if cfg.test_src or cfg.test_tgt else []
    if not valid or not test:  # carve the missing splits from a seeded shuffle of train: still disjoint
        order = np.random.default_rng(cfg.seed).permutation(len(train))
        take = max(1, min(cfg.n_valid, len(train) // 10))
        if len(train) < 3:
            raise rl_utils.UsageError("--train-src needs at least 3 lines when valid/test splits are carved from it")
        carved = [train[i] for i in order[: 2 * take]]
        train = [train[i] for i in order[2 * take:]] or train
        valid = valid or carved[:take]
        test = test or carved[take:]
    return train, valid, test


# ----------------------------------------------------------------------------------------------------------------
# Tensors and batches
# ----------------------------------------------------------------------------------------------------------------
def encode_pairs(pairs: list[Pair], tok: Tokenizer, max_len: int) -> list[tuple[list[int], list[int]]]:
    """Text pairs -> (source ids, BOS + target ids + EOS), truncated to ``max_len`` tokens."""
    out = []
    for src, tgt in pairs:
        s = tok.encode(src)[:max_len] or [UNK]
        t = [BOS] + tok.encode(tgt)[: max_len - 2] + [EOS]
        out.append((s, t))
    return out


def pad_batch(seqs: list[list[int]]) -> torch.Tensor:
    """Right-pad with <pad> (id 0) to the longest sequence: [B, T_max]."""
    out = torch.full((len(seqs), max(map(len, seqs))), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def batches(examples: list[tuple[list[int], list[int]]], batch_size: int,
            rng: np.random.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass over ``examples`` in batches of (src [B, S], tgt [B, T]); shuffled when an rng is given."""
    order = rng.permutation(len(examples)) if rng is not None else np.arange(len(examples))
    for i in range(0, len(order), batch_size):
        chunk = [examples[j] for j in order[i:i + batch_size]]
        yield pad_batch([s for s, _ in chunk]), pad_batch([t for _, t in chunk])


# ----------------------------------------------------------------------------------------------------------------
# CLI: print samples, or export the task as parallel text files
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Args:
    """Show or export the offline tasks (the exported files feed train.py --train-src/--train-tgt)."""

    task: str = "date"
    """date, copy or reverse"""
    data_seed: int = 0
    """seed of the generated data"""
    n_train: int = 50_000
    """training examples"""
    n_valid: int = 1_000
    """validation examples"""
    n_test: int = 2_000
    """test examples"""
    show: int = 8
    """print this many training examples"""
    out_dir: str = ""
    """if set, write {train,valid,test}.{src,tgt} there"""


def main() -> None:
    args = rl_utils.parse_args(Args)
    if args.task == "files":
        raise rl_utils.UsageError("data.py generates date, copy or reverse; files are already files")
    cfg = DataConfig(task=args.task, seed=args.data_seed, n_train=args.n_train, n_valid=args.n_valid,
                     n_test=args.n_test)
    splits = dict(zip(("train", "valid", "test"), load_pairs(cfg)))
    for src, tgt in splits["train"][: args.show]:
        print(f"{src!r:50} -> {tgt!r}")
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, pairs in splits.items():
            (out / f"{name}.src").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
            (out / f"{name}.tgt").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
        print(f"wrote {', '.join(f'{k}: {len(v)}' for k, v in splits.items())} pairs to {out}")


if __name__ == "__main__":
    rl_utils.run_main(main)
