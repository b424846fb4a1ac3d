"""Regenerate the README results: train every registered CNN with its CPU recipe on the MNIST-5000 split, one run
at a time, then write the table (between the bench markers in d2l_notes/README.md) and the figures.

    python d2l_notes/bench.py                       # all 10 nets, ~10 CPU minutes on a 2-core machine
    python d2l_notes/bench.py --models lenet,resnet18 --no-update-readme
    python d2l_notes/bench.py --reuse               # only retrain nets whose recipe changed since their last run
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import dl_utils  # noqa: E402
import rl_utils  # noqa: E402
from d2l_notes.models import MODELS  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


@dataclass
class Args:
    """Train every d2l CNN with its CPU recipe and write the README table and figures."""

    models: str = ",".join(MODELS)
    """comma-separated model names (default: all registered models)"""
    seed: int = 1
    """training seed passed to every run"""
    runs_dir: str = "runs/d2l_bench"
    """where the run folders go"""
    target: float = 0.95
    """test-accuracy target each net should reach (last epoch)"""
    update_readme: bool = True
    """rewrite the table between the bench markers in d2l_notes/README.md"""
    reuse: bool = False
    """reuse a finished run folder whose summary matches the model's current CPU recipe instead of retraining"""


def matches_recipe(summary: dict, recipe: dict) -> bool:
    keys = {"lr": "lr", "epochs": "epochs", "batch_size": "batch_size", "resize": "input_size", "width": "width"}
    same = all(summary.get(v) == recipe[k] for k, v in keys.items() if k in recipe)
    return same and bool(summary.get("normalize")) == bool(recipe.get("normalize", False))


def run_one(name: str, args: Args) -> tuple[dict, Path, str]:
    run_name = f"mnist5k__{name}__{args.seed}"
    cmd = ["d2l_notes/train.py", "--model", name, "--seed", str(args.seed)]
    shown = "python " + " ".join(shlex.quote(c) for c in cmd)
    run = ROOT / args.runs_dir / run_name
    if args.reuse and (run / "summary.json").is_file():
        summary = json.loads((run / "summary.json").read_text())
        if matches_recipe(summary, MODELS[name].cpu):
            return summary, run, shown
    proc = subprocess.run([sys.executable, *cmd, "--runs-dir", args.runs_dir, "--run-name", run_name], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise rl_utils.UsageError(f"{shown} failed: {proc.stderr.strip().splitlines()[-1]}")
    return json.loads((run / "summary.json").read_text()), run, shown


def main() -> None:
    args = rl_utils.parse_args(Args)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for name in names:
        dl_utils.check_choice("model", name, list(MODELS))
    rows, curves, passed = [], {}, []
    for name in names:
        t0 = time.time()
        summary, run, shown = run_one(name, args)
        passed.append(summary["test_acc"] >= args.target)
        ok = "yes" if passed[-1] else "**no**"
        rows.append(f"| {MODELS[name].title} | {summary['input_size']}×{summary['input_size']} | {summary['width']} | "
                    f"{summary['parameters']:,} | {summary['epochs']} | {summary['batch_size']} | {summary['lr']} | "
                    f"{'yes' if summary['normalize'] else 'no'} | "
                    f"{summary['wall_time_s']:.0f} s | {summary['train_images_per_s']:.0f} | "
                    f"**{summary['test_acc']:.3f}** | {summary['best_test_acc']:.3f} | {ok} | `{shown}` |")
        steps, values, _ = rl_utils.read_metrics(run, "test/acc")
        curves[name] = (steps, values)
        print(f"{name:15s} test acc {summary['test_acc']:.3f} (best {summary['best_test_acc']:.3f}) "
              f"in {time.time() - t0:.0f}s", flush=True)
        if name in ("lenet", "resnet18"):
            dl_utils.plot_history(run, HERE / "figures" / f"{name}_mnist5k.png",
                                  title=f"{MODELS[name].title} on MNIST-5000 (CPU recipe, seed {args.seed})")
    fig = dl_utils.plot_test_curves(curves, HERE / "figures" / "bench_test_acc.png",
                                    title=f"Test accuracy on the MNIST-5000 split (1000 test digits), seed {args.seed}")
    header = ("| model | input | width | params | epochs | batch | lr | normalize | wall time | train img/s "
              "| test acc (last epoch) | best epoch | ≥ 95% | command |\n" + "|---" * 14 + "|")
    table = header + "\n" + "\n".join(rows)
    (HERE / "figures").mkdir(exist_ok=True)
    if args.update_readme:
        readme = HERE / "README.md"
        text = readme.read_text()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            readme.write_text(head + START + "\n" + table + "\n" + END + rest.split(END, 1)[1])
    print(table)
    print(f"bench done: {sum(passed)}/{len(rows)} nets reached {args.target:.0%}; figure {fig}")


if __name__ == "__main__":
    rl_utils.run_main(main)
