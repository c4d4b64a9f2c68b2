"""Notebook 01's toy, on which the closed forms of :mod:`sga.theory` are tried: softmax regression on Gaussian
blobs, unlearned by plain gradient steps at a fixed or a dynamic smoothing rate; and the sizes of notebook 01's
checks per preset."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sga.theory import Reading, check_reading, clip_rate, first_order_safe_range, normal_mass, optimal_rate, update_direction

# n_random_checks = random gradient pairs per (reading, K) in the brute-force check; brute_grid = its grid size;
# toy_steps = steps per toy run; sweep_points = fixed rates per reading in the toy sweep; toy_seeds = toy
# problems in that sweep (notebook 05 has the grids of fixed rates on the benchmarks)
SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {"n_random_checks": 20, "brute_grid": 201, "toy_steps": 40, "sweep_points": 5, "toy_seeds": 2},
    "mini": {"n_random_checks": 300, "brute_grid": 801, "toy_steps": 300, "sweep_points": 17, "toy_seeds": 5},
    "paper": {"n_random_checks": 1000, "brute_grid": 801, "toy_steps": 300, "sweep_points": 33, "toy_seeds": 10},
}


def settings(preset: str) -> dict[str, Any]:
    """The sizes of notebook 01's checks for ``preset``."""
    if preset not in SETTINGS:
        raise ValueError(f"Unknown preset {preset!r} for the theory notebook; choose one of {list(SETTINGS)}.")
    return dict(SETTINGS[preset])


def softmax_cross_entropy(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of the linear classifier ``x @ weights`` and its gradient w.r.t. ``weights``."""
    logits = x @ weights
    log_probs = logits - logits.max(axis=1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    residual = np.exp(log_probs)
    residual[rows, y] -= 1
    return float(-log_probs[rows, y].mean()), x.T @ residual / len(y)


def accuracy(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows of ``x`` whose arg-max logit is the label."""
    return float((np.argmax(x @ weights, axis=1) == y).mean())


@dataclass(frozen=True)
class ToyProblem:
    """A pretrained softmax regression, a forget set, K-1 normal samples per forget sample, a retain set.

    Features carry a trailing constant 1 (the bias). ``normal_x`` stacks the K-1 normal samples of every
    forget sample, so the gradient of their mean loss is ḡ.
    """

    weights: np.ndarray
    forget_x: np.ndarray
    forget_y: np.ndarray
    normal_x: np.ndarray
    normal_y: np.ndarray
    retain_x: np.ndarray
    retain_y: np.ndarray
    k: int


def make_toy_problem(
    seed: int = 0,
    k: int = 4,
    n_classes: int = 4,
    n_features: int = 8,
    n_per_class: int = 100,
    n_forget: int = 20,
    pretrain_steps: int = 300,
    pretrain_lr: float = 0.5,
) -> ToyProblem:
    """Gaussian blobs (unit spread, class means ~ N(0, 1.5^2)), a softmax regression fit by full-batch
    gradient descent on all of them, then a random forget set and, for each forget sample, K-1 normal
    samples drawn at random from the rest (the retain set)."""
    normal_mass(k)
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.5, (n_classes, n_features))
    x = np.concatenate([rng.normal(mean, 1.0, (n_per_class, n_features)) for mean in means])
    x = np.hstack([x, np.ones((len(x), 1))])
    y = np.repeat(np.arange(n_classes), n_per_class)
    weights = np.zeros((n_features + 1, n_classes))
    for _ in range(pretrain_steps):
        weights -= pretrain_lr * softmax_cross_entropy(weights, x, y)[1]
    order = rng.permutation(len(x))
    forget, retain = order[:n_forget], order[n_forget:]
    normal = rng.choice(retain, size=n_forget * (k - 1))
    return ToyProblem(weights, x[forget], y[forget], x[normal], y[normal], x[retain], y[retain], k)


def toy_gradients(weights: np.ndarray, problem: ToyProblem) -> tuple[np.ndarray, np.ndarray]:
    """Flattened (g_f, ḡ) of ``problem`` at ``weights``."""
    g_f = softmax_cross_entropy(weights, problem.forget_x, problem.forget_y)[1]
    g_n = softmax_cross_entropy(weights, problem.normal_x, problem.normal_y)[1]
    return g_f.ravel(), g_n.ravel()


def run_toy_unlearning(
    problem: ToyProblem,
    rate: float | Literal["dynamic"],
    reading: Reading = "gls",
    steps: int = 300,
    lr: float = 0.5,
) -> dict[str, np.ndarray]:
    """Plain gradient steps weights += lr * d(r) from the pretrained weights.

    ``rate="dynamic"`` uses r*(t) (``optimal_rate`` at the current weights, clipped to the reading's
    valid range) at every step. Returns arrays over steps 0..steps: forget_loss, normal_loss,
    retain_loss, retain_accuracy, forget_accuracy, param_norm; and over steps 0..steps-1:
    optimal_rate (unclipped r*(t)) and rate (the rate used); "weights" stacks the weights at steps
    0..steps.
    """
    check_reading(reading)
    if rate != "dynamic" and not isinstance(rate, numbers.Real):
        raise ValueError(f"rate must be a number or 'dynamic'; got {rate!r}.")
    weights = problem.weights.copy()
    history: dict[str, list] = {name: [] for name in _TOY_METRICS + ("optimal_rate", "rate", "weights")}
    for step in range(steps + 1):
        _record_toy_metrics(weights, problem, history)
        history["weights"].append(weights.copy())
        if step == steps:
            break
        g_f, g_n = toy_gradients(weights, problem)
        best = optimal_rate(g_f, g_n, problem.k, reading)
        used = clip_rate(best, reading, problem.k) if rate == "dynamic" else float(rate)
        history["optimal_rate"].append(best)
        history["rate"].append(used)
        weights += lr * update_direction(g_f, g_n, used, problem.k, reading).reshape(weights.shape)
    return {name: np.asarray(values) for name, values in history.items()}


def first_step_reaching(values: np.ndarray, level: float) -> int | None:
    """Index of the first entry >= ``level`` (e.g. the step the forget loss reaches a target), or None."""
    reached = np.flatnonzero(np.asarray(values) >= level)
    return int(reached[0]) if reached.size else None


def toy_rate_diagnostics(
    problem: ToyProblem, weights_seq: np.ndarray, reading: Reading = "gls"
) -> dict[str, np.ndarray]:
    """r* (unclipped) and the first-order safe range (lo, hi; NaN where empty) at each weights of a sequence."""
    out: dict[str, list[float]] = {"optimal_rate": [], "safe_lo": [], "safe_hi": []}
    for weights in weights_seq:
        g_f, g_n = toy_gradients(weights, problem)
        safe = first_order_safe_range(g_f, g_n, problem.k, reading)
        out["optimal_rate"].append(optimal_rate(g_f, g_n, problem.k, reading))
        out["safe_lo"].append(math.nan if safe is None else safe.lo)
        out["safe_hi"].append(math.nan if safe is None else safe.hi)
    return {name: np.asarray(values) for name, values in out.items()}


def toy_loss_slopes(
    problem: ToyProblem, weights: np.ndarray, direction: np.ndarray, eps: float = 1e-5
) -> tuple[float, float]:
    """Measured directional derivatives of l_f and of the mean normal loss along ``direction``
    (central differences), to compare with ``first_order_loss_changes``."""
    step = eps * np.asarray(direction, dtype=float).reshape(weights.shape)

    def slope(x: np.ndarray, y: np.ndarray) -> float:
        up = softmax_cross_entropy(weights + step, x, y)[0]
        down = softmax_cross_entropy(weights - step, x, y)[0]
        return (up - down) / (2 * eps)

    return slope(problem.forget_x, problem.forget_y), slope(problem.normal_x, problem.normal_y)


_TOY_METRICS = (
    "forget_loss", "normal_loss", "retain_loss", "retain_accuracy", "forget_accuracy", "param_norm"
)


def _record_toy_metrics(weights: np.ndarray, problem: ToyProblem, history: dict[str, list[float]]) -> None:
    history["forget_loss"].append(softmax_cross_entropy(weights, problem.forget_x, problem.forget_y)[0])
    history["normal_loss"].append(softmax_cross_entropy(weights, problem.normal_x, problem.normal_y)[0])
    history["retain_loss"].append(softmax_cross_entropy(weights, problem.retain_x, problem.retain_y)[0])
    history["retain_accuracy"].append(accuracy(weights, problem.retain_x, problem.retain_y))
    history["forget_accuracy"].append(accuracy(weights, problem.forget_x, problem.forget_y))
    history["param_norm"].append(float(np.linalg.norm(weights)))
