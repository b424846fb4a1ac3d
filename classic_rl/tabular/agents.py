"""Tabular TD control: Q-learning, Sarsa, Expected Sarsa and Sarsa(λ) (accumulating or replacing traces).

All four learn an action-value table Q[s, a] ([S, A]) from transitions (s, a, r, s', a') by moving Q(s, a) a step
α towards a one-step TD target; they differ only in how the target values the next state:

    Sarsa            r + γ Q(s', a')                 a' = the action the ε-greedy policy actually takes next
    Expected Sarsa   r + γ Σ_b π(b|s') Q(s', b)      the expectation of Sarsa's target over the ε-greedy policy
    Q-learning       r + γ max_b Q(s', b)            the greedy policy's value, whatever the agent does next

and every target drops the bootstrap term when the episode *terminated* (a time-limit truncation still
bootstraps, since the state it cut off in still has a future). Sarsa(λ) spreads each TD error back over all
recently visited pairs through an eligibility trace.
"""

from __future__ import annotations

import numpy as np

ALGOS = ("q-learning", "sarsa", "expected-sarsa", "sarsa-lambda")
TRACES = ("accumulating", "replacing")


class TDAgent:
    """ε-greedy behaviour policy over a Q-table; subclasses define the TD target."""

    name = "td"
    needs_next_action = False  # Sarsa-style updates need a' (chosen *before* the update), Q-learning does not

    def __init__(self, n_states: int, n_actions: int, alpha: float, gamma: float, rng: np.random.Generator):
        self.Q = np.zeros((n_states, n_actions))  # [S, A]
        self.n_actions = n_actions
        self.alpha, self.gamma = alpha, gamma
        self.rng = rng
        self.epsilon = 0.1

    def act(self, s: int) -> int:
        """ε-greedy; ties among the greedy actions are broken at random (with Q = 0 at the start every action
        ties, and always taking action 0 would make the first episodes needlessly long)."""
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_actions))
        q = self.Q[s]
        best = np.flatnonzero(q == q.max())
        return int(best[0]) if len(best) == 1 else int(self.rng.choice(best))

    def greedy_action(self, s: int) -> int:
        """Deterministic greedy action (lowest index among ties), for evaluation."""
        return int(self.Q[s].argmax())

    def target(self, r: float, s2: int, a2: int | None, terminated: bool) -> float:
        raise NotImplementedError

    def update(self, s: int, a: int, r: float, s2: int, a2: int | None, terminated: bool) -> float:
        """One TD step on Q(s, a); returns the TD error δ = target − Q(s, a)."""
        delta = self.target(r, s2, a2, terminated) - self.Q[s, a]
        self.Q[s, a] += self.alpha * delta
        return float(delta)

    def end_episode(self) -> None:
        """Called after the last update of an episode (traces are cleared here)."""


class QLearning(TDAgent):
    """Off-policy: learns the greedy policy's values while behaving ε-greedily."""

    name = "q-learning"

    def target(self, r: float, s2: int, a2: int | None, terminated: bool) -> float:
        return r + (0.0 if terminated else self.gamma * self.Q[s2].max())


class Sarsa(TDAgent):
    """On-policy: learns the values of the ε-greedy policy it follows, exploration included."""

    name = "sarsa"
    needs_next_action = True

    def target(self, r: float, s2: int, a2: int | None, terminated: bool) -> float:
        return r + (0.0 if terminated else self.gamma * self.Q[s2, a2])


class ExpectedSarsa(TDAgent):
    """Sarsa's target averaged over the ε-greedy policy at s': same fixed point, no variance from sampling a'."""

    name = "expected-sarsa"

    def policy_probs(self, s: int) -> np.ndarray:
        """π(·|s) of :meth:`act`: ε/|A| everywhere plus (1 − ε) shared equally by the tied greedy actions."""
        q = self.Q[s]
        greedy = (q == q.max()).astype(float)
        return self.epsilon / self.n_actions + (1.0 - self.epsilon) * greedy / greedy.sum()

    def target(self, r: float, s2: int, a2: int | None, terminated: bool) -> float:
        return r + (0.0 if terminated else self.gamma * self.policy_probs(s2) @ self.Q[s2])


class SarsaLambda(Sarsa):
    """Backward-view Sarsa(λ): every pair keeps a trace e(s, a) of how recently and how often it was visited;
    each TD error updates all pairs in proportion to their trace, Q ← Q + α δ e, then e ← γ λ e.

    accumulating: e(s, a) ← e(s, a) + 1 (a pair revisited in a loop can build a trace above 1)
    replacing:    e(s, a) ← 1           (bounded; more robust when an episode cycles through the same pair)
    With λ = 0 the trace is just the current pair, and this is exactly one-step Sarsa."""

    def __init__(self, n_states: int, n_actions: int, alpha: float, gamma: float, rng: np.random.Generator,
                 lam: float = 0.9, trace: str = "accumulating"):
        super().__init__(n_states, n_actions, alpha, gamma, rng)
        if trace not in TRACES:
            raise ValueError(f"trace must be one of {TRACES}, got {trace!r}")
        self.lam, self.trace = lam, trace
        self.E = np.zeros_like(self.Q)  # [S, A] eligibility traces
        self.name = f"sarsa-lambda({lam:g},{trace})"

    def update(self, s: int, a: int, r: float, s2: int, a2: int | None, terminated: bool) -> float:
        delta = self.target(r, s2, a2, terminated) - self.Q[s, a]
        if self.trace == "accumulating":
            self.E[s, a] += 1.0
        else:
            self.E[s, a] = 1.0
        self.Q += self.alpha * delta * self.E
        self.E *= self.gamma * self.lam
        return float(delta)

    def end_episode(self) -> None:
        self.E[:] = 0.0  # credit never flows across episodes


def make_agent(algo: str, n_states: int, n_actions: int, *, alpha: float, gamma: float, rng: np.random.Generator,
               lam: float = 0.9, trace: str = "accumulating") -> TDAgent:
    """One of :data:`ALGOS` by name."""
    if algo == "q-learning":
        return QLearning(n_states, n_actions, alpha, gamma, rng)
    if algo == "sarsa":
        return Sarsa(n_states, n_actions, alpha, gamma, rng)
    if algo == "expected-sarsa":
        return ExpectedSarsa(n_states, n_actions, alpha, gamma, rng)
    if algo == "sarsa-lambda":
        return SarsaLambda(n_states, n_actions, alpha, gamma, rng, lam, trace)
    raise ValueError(f"unknown algo {algo!r}; choose from {', '.join(ALGOS)}")
