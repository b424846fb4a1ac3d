"""offline_rl/datasets.py and make_datasets.py: D4RL hdf5 and Minari round trips, episode split and bootstrap
masks, the normalised score, one-line errors, and the generator end to end on a tiny SAC run."""

from __future__ import annotations

import json

import numpy as np
import pytest

import rl_utils
from offline_rl import datasets
from tests.conftest import only_run_dir, run_script


def _dataset(obs_dim: int = 11, act_dim: int = 3, env_id: str = "Hopper-v5") -> datasets.OfflineDataset:
    """Three episodes: 4 steps ending in a terminal, 3 cut by a time-out, 2 unfinished."""
    rng = np.random.default_rng(0)
    n = 9
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    terminals[3], timeouts[6] = True, True
    return datasets.OfflineDataset(rng.normal(size=(n, obs_dim)), rng.uniform(-1, 1, (n, act_dim)),
                                   np.arange(n, dtype=np.float32), rng.normal(size=(n, obs_dim)), terminals, timeouts,
                                   metadata={"env_id": env_id, "kind": "test"})


def _assert_equal(a: datasets.OfflineDataset, b: datasets.OfflineDataset) -> None:
    for name in datasets.FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_episodes_split_on_terminals_and_timeouts_but_only_terminals_stop_bootstrapping():
    d = _dataset()
    assert d.episode_slices() == [slice(0, 4), slice(4, 7), slice(7, 9)]
    np.testing.assert_array_equal(d.masks, [1, 1, 1, 0, 1, 1, 1, 1, 1])  # the time-out at 6 still bootstraps
    np.testing.assert_allclose(d.episode_returns(), [0 + 1 + 2 + 3, 4 + 5 + 6, 7 + 8])


def test_hdf5_round_trip_is_exact_and_leaves_no_temporary_file(tmp_path):
    d = _dataset()
    path = datasets.save_hdf5(d, tmp_path / "sub" / "hopper-test.hdf5")
    back = datasets.load_hdf5(path)
    _assert_equal(d, back)
    assert back.metadata["kind"] == "test" and back.metadata["env_id"] == "Hopper-v5"
    assert [p.name for p in path.parent.iterdir()] == ["hopper-test.hdf5"]


def test_d4rl_v0_files_without_next_observations_get_them_from_the_next_row(tmp_path):
    import h5py

    d = _dataset()
    with h5py.File(tmp_path / "v0.hdf5", "w") as f:
        for name in ("observations", "actions", "rewards", "terminals"):
            f[name] = getattr(d, name)
    back = datasets.load_hdf5(tmp_path / "v0.hdf5")
    np.testing.assert_array_equal(back.next_observations[:-1], d.observations[1:])
    assert not back.timeouts.any()


def test_minari_round_trip_is_exact(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    d = _dataset()  # Minari keeps T + 1 observations per episode: the data must chain s_{t+1} = s[t + 1] inside one
    consistent = datasets.OfflineDataset(d.observations, d.actions, d.rewards, _next_within_episodes(d),
                                         d.terminals, d.timeouts, d.metadata)
    datasets.save_minari(consistent, "dlrl/test-v0", "Hopper-v5")
    back = datasets.load("dlrl/test-v0", env_id="Hopper-v5")
    _assert_equal(consistent, back)
    assert back.metadata["kind"] == "test" and back.metadata["env_id"] == "Hopper-v5"
    datasets.save_minari(consistent, "dlrl/test-v0", "Hopper-v5")  # rewriting replaces it whole
    assert sorted(p.name for p in (tmp_path / "minari" / "dlrl").iterdir()) == ["namespace_metadata.json", "test-v0"]


def _next_within_episodes(d: datasets.OfflineDataset) -> np.ndarray:
    """s_{t+1} = s[t + 1] inside each episode, a fresh final observation at its end."""
    nxt = np.empty_like(d.observations)
    for s in d.episode_slices():
        nxt[s.start:s.stop - 1] = d.observations[s.start + 1:s.stop]
        nxt[s.stop - 1] = d.observations[s.stop - 1] + 1.0
    return nxt


def test_normalised_score_uses_d4rl_reference_returns():
    low, high = datasets.REF_SCORES["hopper"]
    assert low == -20.272305 and high == 3234.3
    np.testing.assert_allclose(datasets.normalized_score("Hopper-v5", [low, high, (low + high) / 2]), [0, 100, 50])
    assert datasets.normalized_score("Walker2d-v5", 4592.3) == pytest.approx(100.0)
    assert datasets.normalized_score("HalfCheetah-v5", -280.178953) == pytest.approx(0.0)
    with pytest.raises(rl_utils.UsageError, match="no D4RL reference"):
        datasets.normalized_score("Pendulum-v1", 0.0)


def test_bad_datasets_are_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    datasets.save_hdf5(_dataset(), tmp_path / "hopper.hdf5")
    datasets.save_hdf5(_dataset(obs_dim=3, act_dim=1, env_id=""), tmp_path / "small.hdf5")
    (tmp_path / "corrupt.hdf5").write_bytes(b"not hdf5 at all")
    script = "offline_rl/datasets.py"
    cases = {"not found": (tmp_path / "missing.hdf5", "Hopper-v5"),
             "not a readable hdf5": (tmp_path / "corrupt.hdf5", "Hopper-v5"),
             "recorded on Hopper-v5, not Walker2d-v5": (tmp_path / "hopper.hdf5", "Walker2d-v5"),
             "observations have 3 dims": (tmp_path / "small.hdf5", "Hopper-v5"),
             "cannot load Minari dataset": ("dlrl/nothing-v0", "Hopper-v5")}
    for message, (source, env_id) in cases.items():
        proc = run_script(script, "--source", source, "--env-id", env_id, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
            (message, lines)
    ok = json.loads(run_script(script, "--source", tmp_path / "hopper.hdf5").stdout)
    assert ok["transitions"] == 9 and ok["episodes"] == 3 and "normalized_return_mean" in ok


def test_make_datasets_from_a_tiny_sac_run(tmp_path, monkeypatch):
    """The generator end to end on Pendulum: snapshots with their replay, then all five kinds, as hdf5 and Minari;
    sizes, the medium snapshot's choice and the replay's contents are checked against the run itself."""
    run_script("classic_rl/sac/train.py", "--total-timesteps", "600", "--learning-starts", "200", "--batch-size", "32",
               "--hidden-sizes", "32,32", "--eval-every", "200", "--eval-episodes", "2", "--checkpoint-every", "200",
               "--save-buffer", "--runs-dir", tmp_path / "runs")
    run = only_run_dir(tmp_path / "runs")
    out = tmp_path / "data"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    run_script("offline_rl/make_datasets.py", "--source", run, "--steps", "300", "--num-envs", "2", "--out", out,
               timeout=300)
    index = json.loads((out / "pendulum-datasets.json").read_text())
    sizes = {d["kind"]: d["transitions"] for d in index["datasets"]}
    medium = datasets.load_hdf5(out / "pendulum-medium.hdf5")
    step = int(medium.metadata["policy_step"])
    assert sizes == {"random": 300, "medium": 300, "medium-replay": step, "expert": 300, "medium-expert": 600}
    assert medium.metadata["actions"] == "sampled" and medium.metadata["env_id"] == "Pendulum-v1"
    replay = datasets.load("dlrl/pendulum-medium-replay-v0", env_id="Pendulum-v1")  # the Minari copy
    _assert_equal(replay, datasets.load_hdf5(out / "pendulum-medium-replay.hdf5"))
    assert replay.timeouts.sum() == step // 200 and not replay.terminals.any()  # Pendulum: 200-step time limit
    assert np.abs(replay.actions).max() <= 2.0 + 1e-6 and np.abs(replay.actions).max() > 1.0  # env bounds ±2
    both = datasets.load_hdf5(out / "pendulum-medium-expert.hdf5")
    np.testing.assert_array_equal(both.observations[:300], medium.observations)
