"""The Decision Transformer (offline_rl/decision_transformer) and the project's one causal self-attention
(dl_utils.GPT): equal to transformers' GPT2Model with the same weights, the written-out attention equal to the
fused one, the key/value cache equal to the uncached forward, padding that never leaks into real tokens;
returns-to-go and left-padded segments against loops; R̂ updated by each reward (kept in delayed mode); the
script as a user runs it (exact resume, both backbones, BC, --eval-only)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import dl_utils
from offline_rl.decision_transformer import train as dt
from offline_rl.decision_transformer.model import DecisionTransformer, DTConfig
from tests.conftest import only_run_dir, run_script
from tests.offline_data import pendulum_dataset

TRAIN = "offline_rl/decision_transformer/train.py"
TINY = ("--n-embd", "16", "--n-layer", "1", "--n-head", "2", "--context", "4", "--batch-size", "8",
        "--eval-episodes", "2", "--target-returns=-150,-400")


def _gpt(n_layer: int = 2, n_head: int = 2, d: int = 16) -> dl_utils.GPT:
    torch.manual_seed(0)
    return dl_utils.GPT(dl_utils.GPTConfig(n_embd=d, n_layer=n_layer, n_head=n_head, dropout=0.0)).eval()


@pytest.mark.parametrize("activation, hf_name", [("gelu", "gelu_new"), ("relu", "relu")])
def test_gpt_equals_transformers_gpt2model_with_the_same_weights_and_left_padding(activation, hf_name):
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    hf = GPT2Model(GPT2Config(vocab_size=1, n_positions=32, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.0,
                              embd_pdrop=0.0, attn_pdrop=0.0, activation_function=hf_name)).eval()
    torch.nn.init.zeros_(hf.wpe.weight)  # DT uses no position embeddings (the timestep embedding replaces them)
    ours = dl_utils.GPT(dl_utils.GPTConfig(n_embd=16, n_layer=2, n_head=2, dropout=0.0, activation=activation)).eval()
    ours.load_hf_gpt2(hf.state_dict())
    x = torch.randn(3, 10, 16)
    keep = torch.ones(3, 10, dtype=torch.bool)
    keep[1, :4] = False  # left padding, as the DT's segments
    with torch.no_grad():
        expected = hf(inputs_embeds=x, attention_mask=keep.long()).last_hidden_state
        got, _ = ours(x, keep)
    torch.testing.assert_close(got[keep], expected[keep], atol=1e-5, rtol=1e-4)


def test_written_out_attention_equals_the_fused_path_and_padding_never_reaches_real_tokens():
    gpt = _gpt()
    x, keep = torch.randn(2, 9, 16), torch.ones(2, 9, dtype=torch.bool)
    keep[0, :3] = False
    with torch.no_grad():
        fused, _ = gpt(x, keep)
        for block in gpt.h:
            block.attn.fused = False
        plain, _ = gpt(x, keep)
        noisy = x.clone()
        noisy[0, :3] = 100 * torch.randn(3, 16)  # change only the padding
        moved, _ = gpt(noisy, keep)
    torch.testing.assert_close(plain, fused, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(moved[keep], plain[keep], atol=1e-5, rtol=1e-4)
    assert torch.isfinite(plain).all()  # a padding query still has itself to attend to: no empty softmax row


def test_the_kv_cache_equals_the_uncached_forward_token_by_token():
    gpt, x = _gpt(n_layer=3), torch.randn(2, 12, 16)
    with torch.no_grad():
        full, _ = gpt(x)
        cache, outs = None, []
        for start, stop in ((0, 5), (5, 6), (6, 9), (9, 12)):  # chunks of different sizes
            out, cache = gpt(x[:, start:stop], None, cache)
            outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-4)
    assert cache[0][0].shape == (2, 2, 12, 8)  # [B, H, S, hd]


def test_returns_to_go_and_delayed_rewards_against_a_loop():
    rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32)
    episodes = [slice(0, 3), slice(3, 5)]
    np.testing.assert_allclose(dt.returns_to_go(rewards, episodes), [6, 5, 3, 9, 5])
    delayed = dt.delay_rewards(rewards, episodes)
    np.testing.assert_allclose(delayed, [0, 0, 6, 0, 9])
    np.testing.assert_allclose(dt.returns_to_go(delayed, episodes), [6, 6, 6, 9, 9])  # R̂ constant per episode


def test_segments_are_left_padded_inside_one_episode(tmp_path):
    data = pendulum_dataset(tmp_path / "p.hdf5", episodes=2)  # two episodes of 200 steps
    sampler = dt.SegmentSampler(data, data.actions, context=5, delayed=False, seed=0)
    seg = sampler.segments(np.array([10, 197]))
    assert seg["keep"][0].all() and seg["keep"][1].tolist() == [False, False, True, True, True]
    np.testing.assert_array_equal(seg["states"][0], data.observations[10:15])
    np.testing.assert_array_equal(seg["states"][1, 2:], data.observations[197:200])  # stops at the episode's end
    assert not seg["states"][1, :2].any() and seg["timesteps"][1].tolist() == [0, 0, 197, 198, 199]
    rtg = dt.returns_to_go(data.rewards, data.episode_slices())
    np.testing.assert_allclose(seg["returns_to_go"][0, :, 0], rtg[10:15])
    np.testing.assert_allclose(rtg[199], data.rewards[199])  # the last step's R̂ is its own reward


def _dt(context: int = 4) -> DecisionTransformer:
    torch.manual_seed(0)
    return DecisionTransformer(DTConfig(3, 1, context=context, n_embd=16, n_layer=2, n_head=2, dropout=0.0,
                                        max_ep_len=50)).eval()


def test_the_target_return_drops_by_each_reward_and_stays_in_delayed_mode():
    for delayed, expected in ((False, [10.0, 9.0, 6.5]), (True, [10.0, 10.0, 10.0])):
        args = dt.Args(context=4, max_ep_len=50, delayed_reward=delayed)
        policy = dt.DTPolicy(_dt(), 10.0, 2, args, torch.device("cpu"), act_dim=1, state_dim=3)
        policy.reset(np.ones(2, dtype=bool))
        for reward in (1.0, 2.5):
            policy(np.zeros((2, 3), np.float32))
            policy.observe(np.full(2, reward))
        np.testing.assert_allclose(policy.rtg[0, :3], expected)


def test_cached_acting_equals_the_uncached_forward_of_each_chunk():
    model, k = _dt(context=4), 4
    args = dt.Args(context=k, max_ep_len=50, eval_context="cached", return_scale=10.0)
    policy = dt.DTPolicy(model, 5.0, 2, args, torch.device("cpu"), act_dim=1, state_dim=3)
    policy.reset(np.ones(2, dtype=bool))
    rng = np.random.default_rng(0)
    for t in range(10):  # three chunks: steps 0-3, 4-7, 8-9
        action = policy(rng.normal(size=(2, 3)).astype(np.float32))
        start = t - t % k  # the chunk's first step: the uncached model sees steps start..t
        s = torch.as_tensor(policy.states[:, start:t + 1])
        a = torch.as_tensor(policy.actions[:, start:t + 1]).clone()
        a[:, -1] = 0.0  # a_t was unknown when it was predicted
        r = torch.as_tensor(policy.rtg[:, start:t + 1])[..., None] / 10.0
        ts = torch.arange(start, t + 1).expand(2, -1)
        with torch.no_grad():
            expected = model(r, s, a, ts)[:, -1].numpy()
        np.testing.assert_allclose(action, expected, atol=1e-5, rtol=1e-4)
        policy.observe(rng.normal(size=2))


def test_dt_resumes_exactly_evaluates_every_target_and_replays_its_checkpoint(tmp_path):
    data = tmp_path / "pendulum.hdf5"
    pendulum_dataset(data, episodes=4)
    flags = ("--dataset", data, "--eval-every", "0", *TINY)
    run_script(TRAIN, *flags, "--offline-steps", "60", "--runs-dir", tmp_path / "whole")
    run_script(TRAIN, *flags, "--offline-steps", "30", "--runs-dir", tmp_path / "split")
    split = only_run_dir(tmp_path / "split")
    out = run_script(TRAIN, "--resume", split, "--offline-steps", "60").stdout
    assert "R̂ -150" in out and "R̂ -400" in out
    summary = json.loads((split / "summary.json").read_text())
    assert summary["algo"] == "dt" and summary["offline_steps"] == 60
    assert set(summary["final_eval_return_by_target"]) == {"-150", "-400"}
    a = torch.load(split / "ckpt" / "latest.pt", weights_only=False)["model"]
    b = torch.load(only_run_dir(tmp_path / "whole") / "ckpt" / "latest.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert a["normalizer.std"].ne(1).any()  # the dataset's statistics travel with the model
    for context in ("window", "cached"):
        out = run_script(TRAIN, "--eval-only", "--checkpoint", split / "ckpt" / "latest.pt", "--eval-context",
                         context, "--eval-episodes", "2").stdout
        assert "R̂ -150" in out


@pytest.mark.parametrize("extra", [("--backbone", "hf-gpt2"), ("--model", "bc"), ("--delayed-reward",)])
def test_the_hf_backbone_bc_baseline_and_delayed_mode_run(tmp_path, extra):
    data = tmp_path / "pendulum.hdf5"
    pendulum_dataset(data, episodes=2)
    run_script(TRAIN, "--dataset", data, "--offline-steps", "20", "--eval-every", "0", *TINY, *extra,
               "--runs-dir", tmp_path / "runs")
    summary = json.loads((only_run_dir(tmp_path / "runs") / "summary.json").read_text())
    assert summary["algo"] == ("dt_bc" if "bc" in extra else "dt") and summary["final_eval_return"] < 0


def test_bench_speed_reports_training_and_both_acting_modes(tmp_path):
    out = tmp_path / "speed.json"
    run_script("offline_rl/decision_transformer/bench_speed.py", "--n-embd", "16", "--n-layer", "1",
               "--batch-size", "4", "--context", "4", "--train-steps", "2", "--act-steps", "5", "--episodes", "2",
               "--out", out)
    result = json.loads(out.read_text())
    assert result["train_steps_per_s"] > 0 and result["act_ms_per_step_window"] > 0
    assert result["act_ms_per_step_cached"] > 0 and result["context"] == 4


def test_the_d3rlpy_decision_transformer_column_runs_and_reports_like_ours(tmp_path):
    """benchmarks/d3rlpy_baseline.py --algo dt: d3rlpy's stateful wrappers batched for our evaluation."""
    data = tmp_path / "pendulum.hdf5"
    pendulum_dataset(data, episodes=2)
    run_script("benchmarks/d3rlpy_baseline.py", "--algo", "dt", "--dataset", data, "--total-timesteps", "4",
               "--eval-every", "2", "--eval-episodes", "2", "--dt-target-return=-150", "--runs-dir",
               tmp_path / "runs", timeout=600)
    summary = json.loads((only_run_dir(tmp_path / "runs") / "summary.json").read_text())
    assert summary["algo"] == "d3rlpy_dt" and summary["offline_steps"] == 4 and summary["best_eval_step"] in (2, 4)
    assert -2000 < summary["final_eval_return"] <= 0
