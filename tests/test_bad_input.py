"""One table, every script: bad input ends in exit code 2 and one ``error:`` line on stderr (no traceback), and an
existing run folder is left exactly as it was. The rule it checks: validate at the edge, once, in shared code.

Each row runs the script in this process with ``runpy`` (what ``python script.py ARGS`` does, minus the
interpreter start-up), so the whole table takes seconds instead of a subprocess start per row. Trainers get a
tiny budget before the bad flag, so a row whose input slipped through fails fast instead of training for hours."""

from __future__ import annotations

import dataclasses
import hashlib
import runpy
import sys
from pathlib import Path

import pytest

import rl_utils
from tests.conftest import ROOT, run_script

EXISTING = "existing"  # the run folder every row points at (--runs-dir <tmp>/runs --run-name existing)

RL_TINY = ["--total-timesteps", "64", "--eval-every", "0", "--eval-episodes", "1"]
RL_SCRIPTS = ["classic_rl/dqn/train.py", "classic_rl/ppo/train.py", "classic_rl/a2c/train.py",
              "classic_rl/reinforce/train.py", "classic_rl/actor_critic/train.py", "classic_rl/sac/train.py",
              "classic_rl/td3/train.py", "classic_rl/ddpg/train.py", "classic_rl/sac_discrete/train.py",
              "distributional_rl/c51/train.py", "distributional_rl/d4pg/train.py", "classic_rl/trpo/train.py",
              "classic_rl/dppo/train.py", "classic_rl/a3c/train.py", "classic_rl/acer/train.py",
              "classic_rl/her/train.py", "classic_rl/diayn/train.py"]
HAS_CNN = ("classic_rl/dqn/train.py", "distributional_rl/c51/train.py")  # these run image observations
RL_CASES = [
    (["--total-timesteps", "0"], "--total-timesteps must be >= 1"),
    (["--num-envs", "0"], "--num-envs must be >= 1"),
    (["--eval-episodes", "0"], "--eval-episodes must be >= 1"),
    (["--learning-rate", "-1"], "--learning-rate must be >= 0"),
    (["--gamma", "1.5"], "--gamma must be <= 1"),
    (["--env-id", "NoSuchEnv-v0"], "unknown env id"),
    (["--env-id", "CartPol-v1"], "did you mean CartPole-v1"),
    (["--hidden-sizes", "64,abc"], "--hidden-sizes"),
    (["--device", "tpu"], "--device"),
    (["--seed", "x"], "invalid int value"),
    (["--no-such-flag"], "unrecognized arguments"),
    (["--env-id", "ALE/Pong-v5"], "ALE/Pong-v5"),  # image observations: the MLP scripts say so (DQN: the CNN runs)
    (["--resume", "{other}"], "written by"),  # a checkpoint another script wrote
    (["--resume", "{missing}"], "checkpoint not found"),
    (["--runs-dir", "{file}"], "cannot write the run folder"),
    (["--eval-only"], "--eval-only needs --checkpoint"),
    (["--eval-only", "--checkpoint", "{missing}"], "checkpoint not found"),
]
# (script, argv, fragment of the message). "{existing}", "{other}", "{file}", "{missing}" are filled in below.
CASES = [(s, RL_TINY + argv, msg) for s in RL_SCRIPTS for argv, msg in RL_CASES
         if not (s in HAS_CNN and "ALE/Pong-v5" in argv)
         and not (s.endswith("ppo/train.py") and "{other}" in argv)] + [  # the planted checkpoint is PPO's
    ("classic_rl/dqn/train.py", RL_TINY + ["--batch-size", "0"], "--batch-size must be >= 1"),
    ("classic_rl/dqn/train.py", RL_TINY + ["--discrete-actions", "5"], "discretises Box actions"),
    ("classic_rl/dqn/train.py", RL_TINY + ["--env-id", "Pendulum-v1"], "--discrete-actions"),
    ("classic_rl/dqn/train.py", RL_TINY + ["--loss", "l1"], "--loss must be huber or mse, got 'l1'"),
    ("distributional_rl/c51/train.py", RL_TINY + ["--env-id", "Pendulum-v1"], "C51 needs a Discrete action space"),
    ("distributional_rl/c51/train.py", RL_TINY + ["--n-atoms", "1"], "--n-atoms must be >= 2"),
    ("distributional_rl/c51/train.py", RL_TINY + ["--v-min", "5", "--v-max", "5"], "--v-min must be < --v-max"),
    ("distributional_rl/d4pg/train.py", RL_TINY + ["--ray-address", "127.0.0.1:1"], "no Ray head answers there"),
    ("distributional_rl/d4pg/train.py", RL_TINY + ["--ray-address", "somewhere"], "must be HOST:PORT"),
    ("distributional_rl/d4pg/train.py", RL_TINY + ["--norm-obs"], "does not normalise"),
    ("distributional_rl/d4pg/train.py", RL_TINY + ["--env-id", "CartPole-v1"], "needs continuous (Box) actions"),
    ("distributional_rl/d4pg/train.py", RL_TINY + ["--exploration-noise", "pink"], "--exploration-noise"),
    ("distributional_rl/d4pg/train.py", RL_TINY + ["--v-min", "0", "--v-max", "-1"], "--v-min must be < --v-max"),
    ("distributional_rl/d4pg/train.py", RL_TINY + ["--env-id", "no_such_module:Env-v0"], "cannot import"),
    ("classic_rl/trpo/train.py", RL_TINY + ["--shared-trunk"], "--shared-trunk does not fit TRPO"),
    ("classic_rl/trpo/train.py", RL_TINY + ["--line-search-shrink", "1.5"], "--line-search-shrink must be <= 1"),
    ("classic_rl/dppo/train.py", RL_TINY + ["--num-workers", "0"], "--num-workers must be >= 1"),
    ("classic_rl/dppo/train.py", RL_TINY + ["--ray-address", "somewhere"], "must be HOST:PORT"),
    ("classic_rl/dppo/train.py", RL_TINY + ["--num-minibatches", "7"], "must divide num_steps x num_envs"),
    ("distributional_rl/c51/plot_distributions.py", [], "--run"),
    ("distributional_rl/c51/plot_distributions.py", ["--run", "{missing}"], "not found"),
    ("distributional_rl/c51/plot_distributions.py", ["--run", "{existing}"], "--checkpoint-every"),
    ("distributional_rl/c51/plot_distributions.py", ["--run", "{existing}", "--states-from", "x"],
     "--states-from must be random or greedy"),
    ("classic_rl/ppo/train.py", RL_TINY + ["--resume", "{existing}", "--gamma", "2"], "--gamma must be <= 1"),
    ("classic_rl/sac/train.py", RL_TINY + ["--env-id", "CartPole-v1"], "use classic_rl/sac_discrete/train.py"),
    ("classic_rl/sac/train.py", RL_TINY + ["--tau", "1.5"], "--tau must be <= 1"),
    ("classic_rl/sac_discrete/train.py", RL_TINY + ["--env-id", "Pendulum-v1"], "use classic_rl/sac/train.py"),
    ("classic_rl/sac_discrete/train.py", RL_TINY + ["--target-entropy-scale", "1.5"],
     "--target-entropy-scale must be <= 1"),
    ("classic_rl/sac/train.py", RL_TINY + ["--batch-size", "0"], "--batch-size must be >= 1"),
    ("classic_rl/td3/train.py", RL_TINY + ["--exploration-noise", "pink"], "--exploration-noise"),
    ("classic_rl/td3/train.py", RL_TINY + ["--num-critics", "3"], "--num-critics must be <= 2"),
    ("classic_rl/ddpg/train.py", RL_TINY + ["--resume", "{missing}"], "checkpoint not found"),
    ("classic_rl/diayn/train.py", RL_TINY + ["--env-id", "CartPole-v1"], "needs continuous (Box) actions"),
    ("classic_rl/diayn/train.py", RL_TINY + ["--num-skills", "0"], "--num-skills must be >= 2"),
    ("classic_rl/diayn/train.py", RL_TINY + ["--num-skills", "1"], "--num-skills must be >= 2"),
    ("classic_rl/diayn/train.py", RL_TINY + ["--discriminator-lr", "-1"], "--discriminator-lr must be >= 0"),
    ("classic_rl/diayn/train.py", RL_TINY + ["--norm-obs"], "DIAYN does not normalise"),
    ("classic_rl/diayn/train.py", RL_TINY + ["--alpha", "0"], "--alpha must be > 0"),
    ("classic_rl/sac/train.py", RL_TINY + ["--alpha", "0"], "--alpha must be > 0"),
    ("classic_rl/sac_discrete/train.py", RL_TINY + ["--alpha", "0"], "--alpha must be > 0"),
    ("classic_rl/ppo/train.py", RL_TINY + ["--num-minibatches", "0"], "--num-minibatches must be >= 1"),
    ("classic_rl/ppo/train.py", RL_TINY + ["--activation", "gelu"], "--activation"),
    ("classic_rl/ppo/train.py", RL_TINY + ["--num-minibatches", "3"], "must divide"),
    ("classic_rl/ppo/train.py", RL_TINY + ["--env-id", "ALE/Pong-v5"], "flat vector observations"),
    ("classic_rl/pong/train.py", RL_TINY + ["--env-id", "CartPole-v1"], "is not an Atari env"),
    ("classic_rl/pong/train.py", RL_TINY + ["--env-id", "CartPoleNoVelocity-v1", "--backbone", "cnn3d"],
     "is not an Atari env"),
    ("classic_rl/pong/train.py", RL_TINY + ["--env-id", "CartPole-v1", "--backbone", "mlp"], "--discount-by rounds"),
    ("classic_rl/pong/train.py", RL_TINY + ["--env-id", "Pendulum-v1", "--backbone", "mlp", "--discount-by",
                                            "episodes"], "needs a Discrete action space"),
    ("classic_rl/pong/train.py", RL_TINY + ["--lookback", "0"], "--lookback must be >= 1"),
    ("classic_rl/pong/train.py", RL_TINY + ["--norm-obs"], "are for vector envs"),
    ("classic_rl/pong/train.py", RL_TINY + ["--backbone", "cnn3d", "--frames", "4"], "--frames >= 7"),
    ("classic_rl/pong/train.py", RL_TINY + ["--backbone", "rnn"], "--backbone must be"),
    ("classic_rl/pong/train.py", RL_TINY + ["--ffn", "gelu"], "--ffn must be mlp or none"),
    ("classic_rl/pong/train.py", RL_TINY + ["--backbone", "transformer", "--n-head", "3"], "divisible by --n-head"),
    ("classic_rl/pong/train.py", RL_TINY + ["--collect", "rollouts"], "--collect must be episodes or steps"),
    ("classic_rl/pong/train.py", RL_TINY + ["--eval-only"], "--eval-only needs --checkpoint"),
    ("classic_rl/pong/train.py", RL_TINY + ["--resume", "{other}"], "written by"),
    ("classic_rl/pong/bench_cache.py", ["--lookbacks", "0"], "--lookbacks values must be >= 1"),
    ("classic_rl/a2c/train.py", RL_TINY + ["--optimizer", "sgd"], "--optimizer must be rmsprop or adam"),
    ("classic_rl/a2c/train.py", RL_TINY + ["--num-steps", "0"], "--num-steps must be >= 1"),
    ("classic_rl/a2c/train.py", RL_TINY + ["--gae-lambda", "-0.1"], "--gae-lambda must be >= 0"),
    ("classic_rl/actor_critic/train.py", RL_TINY + ["--critic", "w"], "--critic"),
    ("classic_rl/actor_critic/train.py", RL_TINY + ["--critic", "q", "--shared-trunk"], "--shared-trunk"),
    ("classic_rl/actor_critic/train.py", RL_TINY + ["--num-steps", "0"], "--num-steps"),
    ("classic_rl/reinforce/train.py", RL_TINY + ["--activation", "sigmoid"], "--activation"),
    ("classic_rl/tabular/train.py", ["--algo", "nope"], "--algo"),
    ("classic_rl/tabular/train.py", ["--episodes", "0"], "--episodes must be >= 1"),
    ("classic_rl/tabular/train.py", ["--env-id", "CartPole-v1"], "CartPole-v1"),
    ("classic_rl/tabular/train.py", ["--alpha", "-0.5"], "--alpha"),
    ("classic_rl/tabular/example_6_6.py", ["--algos", "nope"], "nope"),
    ("classic_rl/tabular/example_6_6.py", ["--runs", "0"], "--runs must be >= 1"),
    ("classic_rl/tabular/success_rates.py", ["--seeds", "0"], "--seeds must be >= 1"),
    ("classic_rl/bandits/train.py", ["--solvers", "nope"], "nope"),
    ("classic_rl/bandits/train.py", ["--bandits", "poisson"], "bernoulli"),
    ("classic_rl/bandits/train.py", ["--arms", "1"], "--arms must be >= 2"),
    ("classic_rl/bandits/train.py", ["--steps", "0"], "--steps must be >= 1"),
    ("classic_rl/dynamic_programming/train.py", ["--algo", "nope"], "--algo"),
    ("classic_rl/dynamic_programming/train.py", ["--gamma", "1.5"], "--gamma"),
    ("classic_rl/dynamic_programming/train.py", ["--env-id", "CartPole-v1"], "CartPole-v1"),
    ("classic_rl/dynamic_programming/bench.py", ["--seed", "x"], "invalid int value"),
    ("d2l_notes/train.py", ["--epochs", "0"], "--epochs must be >= 1"),
    ("d2l_notes/train.py", ["--model", "nope"], "nope"),
    ("d2l_notes/train.py", ["--dataset", "nope"], "nope"),
    ("d2l_notes/train.py", ["--batch-size", "0"], "--batch-size must be >= 1"),
    ("d2l_notes/train.py", ["--resume", "{other}"], "written by"),
    ("d2l_notes/train.py", ["--runs-dir", "{file}"], "cannot write the run folder"),
    ("d2l_notes/bench.py", ["--models", "nope"], "nope"),
    ("vit/train.py", ["--epochs", "0"], "--epochs must be >= 1"),
    ("vit/train.py", ["--model", "nope"], "nope"),
    ("vit/train.py", ["--dataset", "imagefolder"], "--data-dir"),
    ("vit/train.py", ["--drop-path", "2"], "--drop-path must be <= 1"),
    ("vit/train.py", ["--resume", "{other}"], "written by"),
    ("vit/train.py", ["--runs-dir", "{file}"], "cannot write the run folder"),
    ("vit/finetune.py", ["--steps", "0"], "--steps must be >= 1"),
    ("vit/finetune.py", ["--pretrained", "{missing}"], "missing"),
    ("vit/classify.py", ["--image", "{missing}"], "missing"),
    ("vit/classify.py", ["--model", "{missing}", "--image", "chelsea"], "missing"),
    ("vit/classify.py", ["--top-k", "0"], "--top-k must be >= 1"),
    ("vit/visualize_attention.py", ["--model", "{missing}"], "missing"),
    ("vit/visualize_attention.py", ["--head-fusion", "nope"], "head fusion"),
    ("vit/bench_speed.py", ["--configs", "nope"], "nope"),
    ("vit/bench_speed.py", ["--repeats", "0"], "--repeats must be >= 1"),
    ("vit/bench_speed.py", ["--batch-sizes", "8,x"], "--batch-sizes must be comma-separated integers"),
    ("swin_transformer/train.py", ["--epochs", "0"], "--epochs must be >= 1"),
    ("swin_transformer/train.py", ["--config", "nope"], "nope"),
    ("swin_transformer/train.py", ["--resume", "{other}"], "written by"),
    ("swin_transformer/train.py", ["--runs-dir", "{file}"], "cannot write the run folder"),
    ("swin_transformer/visualize.py", ["--checkpoint", "{missing}"], "missing"),
    ("swin_transformer/visualize.py", ["--window", "0"], "--window must be >= 1"),
    ("swin_transformer/bench_speed.py", ["--config", "nope"], "nope"),
    ("swin_transformer/bench_speed.py", ["--batch-size", "0"], "--batch-size must be >= 1"),
    ("transformer_basic/train.py", ["--max-steps", "0"], "--max-steps must be >= 1"),
    ("transformer_basic/train.py", ["--task", "nope"], "nope"),
    ("transformer_basic/train.py", ["--train-src", "{missing}", "--train-tgt", "{missing}"], "missing"),
    ("transformer_basic/train.py", ["--d-model", "130", "--n-heads", "4"], "--n-heads"),
    ("transformer_basic/train.py", ["--resume", "{other}"], "written by"),
    ("transformer_basic/train.py", ["--runs-dir", "{file}"], "cannot write the run folder"),
    ("transformer_basic/translate.py", ["--checkpoint", "{missing}", "--text", "x"], "missing"),
    ("transformer_basic/translate.py", ["--text", "x"], "--checkpoint"),
    ("transformer_basic/bench_speed.py", ["--batch-size", "0"], "--batch-size must be >= 1"),
    ("transformer_basic/bench_speed.py", ["--n-heads", "3"], "--n-heads"),
    ("transformer_basic/data.py", ["--task", "nope"], "nope"),
    ("offline_rl/awac/train.py", [], "--dataset PATH_OR_MINARI_ID is required"),
    ("offline_rl/awac/train.py", ["--dataset", "{missing}"], "cannot load Minari dataset"),
    ("offline_rl/awac/train.py", ["--dataset", "{file}"], "is not a readable hdf5 file"),
    ("offline_rl/awac/train.py", ["--dataset", "{file}", "--weighting", "nope"], "--weighting must be exp, softmax"),
    ("offline_rl/awac/train.py", ["--dataset", "{file}", "--offline-steps", "-1"], "--offline-steps must be >= 0"),
    ("rl_utils.py", ["plot", "{missing}"], "missing"),
    ("benchmarks/run.py", ["--suite", "nope"], "nope"),
    ("benchmarks/sb3_baseline.py", ["--algo", "nope"], "nope"),
    ("offline_rl/bcq/train.py", [], "--dataset PATH_OR_MINARI_ID is required"),
    ("offline_rl/bcq/train.py", ["--dataset", "{file}", "--phi", "2"], "--phi must be <= 1"),
    ("offline_rl/bcq/train.py", ["--dataset", "{file}", "--total-timesteps", "10"], "BCQ learns offline only"),
    ("offline_rl/decision_transformer/train.py", [], "--dataset PATH_OR_MINARI_ID is required"),
    ("offline_rl/decision_transformer/train.py", ["--model", "nope"], "--model must be dt or bc"),
    ("offline_rl/decision_transformer/train.py", ["--n-embd", "10", "--n-head", "3"], "must be divisible by"),
    ("offline_rl/decision_transformer/train.py", ["--backbone", "hf-gpt2", "--eval-context", "cached"],
     "--eval-context cached needs"),
    ("offline_rl/decision_transformer/train.py", ["--dataset", "{file}"], "is not a readable hdf5 file"),
    ("benchmarks/d3rlpy_baseline.py", ["--algo", "nope"], "--algo must be awac, bc, bcq, cql or dt"),
    ("benchmarks/d3rlpy_baseline.py", [], "--dataset PATH_OR_MINARI_ID is required"),
    ("benchmarks/d3rlpy_baseline.py", ["--dataset", "{file}"], "is not a readable hdf5 file"),
]

RUN_FOLDER_SCRIPTS = {s for s in RL_SCRIPTS} | {"d2l_notes/train.py", "vit/train.py", "vit/finetune.py",
                                                "swin_transformer/train.py", "transformer_basic/train.py",
                                                "classic_rl/tabular/train.py", "classic_rl/bandits/train.py",
                                                "classic_rl/dynamic_programming/train.py", "offline_rl/awac/train.py",
                                                "offline_rl/bcq/train.py", "offline_rl/decision_transformer/train.py"}
RUN_FOLDER_SCRIPTS |= {"classic_rl/pong/train.py"}


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """An existing run folder (config, metrics, a PPO checkpoint), a plain file, and a path that does not exist."""
    from classic_rl.ppo.train import Args as PPOArgs

    root = tmp_path_factory.mktemp("bad_input")
    run = root / "runs" / EXISTING
    (run / "ckpt").mkdir(parents=True)
    (run / "config.json").write_text('{"env_id": "CartPole-v1"}')
    (run / "metrics.csv").write_text("step,tag,value,wall_time\n0,eval/return,9.5,0.1\n")
    rl_utils.save_checkpoint(run / "ckpt" / "latest.pt", script=rl_utils.script_id(PPOArgs), algo="ppo",
                             args=dataclasses.asdict(PPOArgs()), step=128, elapsed=1.0)
    (root / "a_file").write_text("not a folder")
    return {"root": root, "runs": root / "runs", "existing": run, "other": run, "file": root / "a_file",
            "missing": root / "missing"}


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def _run(script: str, argv: list[str], monkeypatch) -> int | str | None:
    monkeypatch.setattr(sys, "argv", [script, *argv])
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    return exit_info.value.code


@pytest.mark.parametrize(("script", "argv", "message"), CASES,
                         ids=[f"{s}:{' '.join(a[len(RL_TINY):] if a[:len(RL_TINY)] == RL_TINY else a)}"
                              for s, a, _ in CASES])
def test_bad_input_is_exit_2_one_error_line_and_nothing_written(script, argv, message, places, monkeypatch, capsys):
    filled = [a.format(**{k: str(v) for k, v in places.items()}) for a in argv]
    if script in RUN_FOLDER_SCRIPTS and "--runs-dir" not in argv:
        filled += ["--runs-dir", str(places["runs"]), "--run-name", EXISTING]
    before = _snapshot(places["root"])
    code = _run(script, filled, monkeypatch)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (code, err[-2000:])
    assert message.format(**{k: str(v) for k, v in places.items()}) in lines[0], lines[0]
    assert _snapshot(places["root"]) == before, "the existing run folder was modified, or a new one made"


def test_in_process_rows_match_a_real_process(places):
    """The table runs scripts in-process; the same row as a real ``python script.py`` gives the same result."""
    proc = run_script("classic_rl/dqn/train.py", *RL_TINY, "--batch-size", "0", "--runs-dir", places["runs"],
                      "--run-name", EXISTING, check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --batch-size must be >= 1, got 0"
