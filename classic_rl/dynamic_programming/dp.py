"""Policy iteration and value iteration on any env with a known model ``env.unwrapped.P``.

gymnasium's toy-text envs (FrozenLake, CliffWalking, Taxi, our Maze4x4) expose their dynamics as
``P[s][a] = [(prob, next_state, reward, terminated), ...]``. :func:`model_from_env` turns that into two arrays

    R[s, a]     = Σ prob · reward                       expected immediate reward           [S, A]
    T[s, a, s'] = Σ prob · (1 − terminated)              probability of *continuing* to s'  [S, A, S]

so that every backup below is one line, ``Q = R + γ T V``: the ``(1 − done)`` factor is folded into T, and a
transition that ends the episode never bootstraps from the value of the state it lands in. (The notes dropped
that factor in policy evaluation; here it cannot be forgotten.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

import rl_utils

# Arrow directions (d_row, d_col) per action, for the envs whose grids we draw.
ACTION_DELTAS = {
    "FrozenLakeEnv": ((0, -1), (1, 0), (0, 1), (-1, 0)),  # left, down, right, up
    "CliffWalkingEnv": ((-1, 0), (0, 1), (1, 0), (0, -1)),  # up, right, down, left
}


@dataclass
class TabularModel:
    """Known finite MDP, arrays as described in the module docstring."""

    R: np.ndarray  # [S, A] expected reward
    T: np.ndarray  # [S, A, S] continuation probabilities (rows sum to 1 − P(terminate))
    start: np.ndarray  # [S] initial-state distribution
    terminal: np.ndarray  # [S] bool: states only ever entered by a terminating transition (value 0 by definition)
    unreachable: np.ndarray  # [S] bool: states no transition leads to (e.g. CliffWalking's cliff cells)
    grid: tuple[int, int] | None = None  # (rows, cols) when states are row-major cells of a grid
    desc: np.ndarray | None = None  # [rows, cols] letters S/F/H/G/C for the plots
    action_deltas: tuple[tuple[int, int], ...] | None = None
    name: str = ""
    extras: dict = field(default_factory=dict)

    @property
    def n_states(self) -> int:
        return self.R.shape[0]

    @property
    def n_actions(self) -> int:
        return self.R.shape[1]


def require_tabular(env: gym.Env, env_id: str, what: str) -> None:
    """One-line :class:`rl_utils.UsageError` unless both spaces are Discrete (and, for DP, a model P exists)."""
    obs, act = env.observation_space, env.action_space
    needs_model = what == "dynamic programming"
    has_model = hasattr(env.unwrapped, "P")
    if isinstance(obs, gym.spaces.Discrete) and isinstance(act, gym.spaces.Discrete) and (has_model or not needs_model):
        return
    need = "a discrete observation space, a discrete action space" + (
        " and a transition model env.unwrapped.P" if needs_model else "")
    raise rl_utils.UsageError(
        f"{what} needs {need} (a toy-text env such as FrozenLake-v1, CliffWalking-v1 or Maze4x4-v0); "
        f"{env_id} has observation space {obs}, action space {act}"
        + ("" if has_model or not needs_model else " and no env.unwrapped.P"))


def model_from_P(P: dict, n_states: int, n_actions: int, start: np.ndarray | None = None) -> TabularModel:
    """Turn a toy-text table ``P[s][a] = [(prob, next_state, reward, terminated)]`` into arrays R and T."""
    R = np.zeros((n_states, n_actions))
    T = np.zeros((n_states, n_actions, n_states))
    entered = np.zeros(n_states, dtype=bool)  # some transition leads here
    entered_continuing = np.zeros(n_states, dtype=bool)  # ... without ending the episode
    for s in range(n_states):
        for a in range(n_actions):
            for prob, s2, reward, done in P[s][a]:
                R[s, a] += prob * reward
                if prob > 0:
                    entered[s2] = True
                    entered_continuing[s2] |= not done
                if not done:
                    T[s, a, s2] += prob  # += because P may list the same s' twice (slippery moves into a wall)
    start = np.eye(n_states)[0] if start is None else np.asarray(start, dtype=np.float64)
    # A state that is only ever entered by terminating transitions is never acted in: the episode is over. Its
    # value is 0 by definition, even where P still lists moves out of it (CliffWalking's goal does).
    terminal = entered & ~entered_continuing & (start == 0)
    R[terminal] = 0.0
    T[terminal] = 0.0
    unreachable = ~entered & (start == 0)
    return TabularModel(R, T, start, terminal, unreachable)


def model_from_env(env: gym.Env, name: str = "") -> TabularModel:
    """Read ``env.unwrapped.P`` into a :class:`TabularModel` (also finds terminal cells and the grid layout)."""
    u = env.unwrapped
    n_s, n_a = int(env.observation_space.n), int(env.action_space.n)
    model = model_from_P(u.P, n_s, n_a, getattr(u, "initial_state_distrib", None))
    if hasattr(u, "desc") and np.ndim(u.desc) == 2 and np.size(u.desc) == n_s:  # FrozenLake, Maze4x4
        model.desc = np.char.decode(u.desc, "ascii") if u.desc.dtype.kind == "S" else np.asarray(u.desc)
        model.grid = model.desc.shape
    elif hasattr(u, "shape") and hasattr(u, "_cliff"):  # CliffWalking
        model.grid = tuple(u.shape)
        model.desc = np.full(model.grid, "F")
        model.desc[u._cliff] = "C"
        model.desc.flat[u.start_state_index] = "S"
        model.desc[-1, -1] = "G"
    model.action_deltas = getattr(u, "action_deltas", None) or ACTION_DELTAS.get(type(u).__name__)
    model.name = name
    return model


def notes_cliff_walking_model(nrow: int = 4, ncol: int = 12) -> TabularModel:
    """The notes' hand-written CliffWalking (from Hands-on RL): actions 0 up, 1 down, 2 left, 3 right; −1 a step;
    stepping into the cliff gives −100 and *ends* the episode (gymnasium instead sends you back to the start)."""
    change = ((0, -1), (0, 1), (-1, 0), (1, 0))  # (d_col, d_row) per action, as in the notes
    P: dict = {s: {} for s in range(nrow * ncol)}
    for i in range(nrow):
        for j in range(ncol):
            for a in range(4):
                s = i * ncol + j
                if i == nrow - 1 and j > 0:  # cliff cells and the goal: absorbing
                    P[s][a] = [(1.0, s, 0.0, True)]
                    continue
                x = min(ncol - 1, max(0, j + change[a][0]))
                y = min(nrow - 1, max(0, i + change[a][1]))
                done = y == nrow - 1 and x > 0
                reward = -100.0 if done and x != ncol - 1 else -1.0
                P[s][a] = [(1.0, y * ncol + x, reward, done)]
    model = model_from_P(P, nrow * ncol, 4, np.eye(nrow * ncol)[(nrow - 1) * ncol])
    model.grid = (nrow, ncol)
    model.desc = np.full(model.grid, "C")
    model.desc[:-1] = "F"
    model.desc[-1, 0], model.desc[-1, -1] = "S", "G"
    model.action_deltas = ((-1, 0), (1, 0), (0, -1), (0, 1))
    model.name = "notes' CliffWalking"
    return model


# ----------------------------------------------------------------------------------------------------------------
# The algorithms. A policy is a matrix pi[s, a] of action probabilities ([S, A]); values are vectors [S].
# ----------------------------------------------------------------------------------------------------------------
def q_values(model: TabularModel, V: np.ndarray, gamma: float) -> np.ndarray:
    """Q(s, a) = R(s, a) + γ Σ_s' T(s, a, s') V(s')   — one-step lookahead, shape [S, A]."""
    return model.R + gamma * model.T @ V


def policy_evaluation(model: TabularModel, pi: np.ndarray, gamma: float, theta: float,
                      V0: np.ndarray | None = None, max_sweeps: int = 1_000_000) -> tuple[np.ndarray, int]:
    """Iterate the Bellman expectation backup V ← Σ_a π(a|s) Q_V(s, a) until the largest change is < θ.

    Synchronous sweeps (each uses the previous V everywhere), as in the notes. Returns (V, sweeps)."""
    V = np.zeros(model.n_states) if V0 is None else V0.copy()
    for sweep in range(1, max_sweeps + 1):
        V_new = (pi * q_values(model, V, gamma)).sum(1)
        delta = np.abs(V_new - V).max()
        V = V_new
        if delta < theta:
            return V, sweep
    raise RuntimeError(f"policy evaluation did not converge in {max_sweeps} sweeps (γ = 1 and a policy that "
                       "never terminates?)")


def greedy_policy(Q: np.ndarray, old_actions: np.ndarray | None = None, tol: float = 1e-9) -> np.ndarray:
    """Deterministic greedy actions [S]. With ``old_actions``, keep the old action wherever it is still within
    ``tol`` of the best: policy iteration then stops instead of flipping between equally good actions."""
    best = Q.argmax(1)
    if old_actions is None:
        return best
    still_best = Q[np.arange(len(Q)), old_actions] >= Q.max(1) - tol
    return np.where(still_best, old_actions, best)


def one_hot(actions: np.ndarray, n_actions: int) -> np.ndarray:
    return np.eye(n_actions)[actions]


@dataclass
class DPResult:
    V: np.ndarray  # [S]
    actions: np.ndarray  # [S] greedy deterministic policy
    iterations: int  # policy-improvement steps (PI) or value sweeps (VI)
    eval_sweeps: list[int] = field(default_factory=list)  # PI: sweeps of each policy evaluation


def policy_iteration(model: TabularModel, gamma: float, theta: float, split_ties: bool = False) -> DPResult:
    """Evaluate, improve greedily, repeat until the policy is stable. Starts from the uniform random policy.

    Policy improvement theorem: if Q_π(s, π'(s)) ≥ V_π(s) for every s then V_π' ≥ V_π everywhere, so each greedy
    step never gets worse, and with finitely many deterministic policies it must stop, at an optimal one.

    ``split_ties`` reproduces the notes' rule: π'(·|s) uniform over the actions whose Q equals the max exactly, and
    stop when π' == π. The default keeps one action per state and only switches on a strict improvement."""
    pi = np.full((model.n_states, model.n_actions), 1.0 / model.n_actions)
    V, actions, sweeps = np.zeros(model.n_states), None, []
    while True:
        V, n = policy_evaluation(model, pi, gamma, theta, V0=V)  # warm start from the previous V, as the notes
        sweeps.append(n)
        Q = q_values(model, V, gamma)
        if split_ties:
            ties = (Q.max(1, keepdims=True) == Q).astype(float)
            new_pi = ties / ties.sum(1, keepdims=True)
            if np.array_equal(new_pi, pi):
                return DPResult(V, Q.argmax(1), len(sweeps), sweeps)
            pi = new_pi
            continue
        new_actions = greedy_policy(Q, actions)
        if actions is not None and np.array_equal(new_actions, actions):
            return DPResult(V, actions, len(sweeps), sweeps)
        actions = new_actions
        pi = one_hot(actions, model.n_actions)


def value_iteration(model: TabularModel, gamma: float, theta: float, max_sweeps: int = 1_000_000) -> DPResult:
    """Iterate the Bellman optimality backup V ← max_a Q_V(s, a) until the largest change is < θ.

    The backup is a γ-contraction in the max norm, so V_k → V* geometrically; stopping at a change < θ leaves
    ‖V − V*‖∞ ≤ γθ / (1 − γ)."""
    V = np.zeros(model.n_states)
    for sweep in range(1, max_sweeps + 1):
        V_new = q_values(model, V, gamma).max(1)
        delta = np.abs(V_new - V).max()
        V = V_new
        if delta < theta:
            return DPResult(V, greedy_policy(q_values(model, V, gamma)), sweep)
    raise RuntimeError(f"value iteration did not converge in {max_sweeps} sweeps")


def exact_policy_value(model: TabularModel, actions: np.ndarray, gamma: float) -> np.ndarray:
    """Solve the Bellman expectation equation of a deterministic policy exactly: (I − γ T_π) V = R_π."""
    idx = np.arange(model.n_states)
    T_pi, R_pi = model.T[idx, actions], model.R[idx, actions]  # [S, S], [S]
    return np.linalg.solve(np.eye(model.n_states) - gamma * T_pi, R_pi)


def rollout_greedy(model: TabularModel, actions: np.ndarray, max_steps: int = 1000) -> tuple[list[int], float]:
    """Follow a deterministic policy in a *deterministic* model from the most likely start state.
    Returns (states acted in, undiscounted return); stops when the episode ends or a state repeats."""
    s = int(model.start.argmax())
    states, total = [s], 0.0
    for _ in range(max_steps):
        a = actions[s]
        total += model.R[s, a]
        if model.T[s, a].sum() == 0:  # the transition terminated
            break
        s = int(model.T[s, a].argmax())
        if s in states:
            break  # a loop: the policy never reaches a terminal state
        states.append(s)
    return states, total
