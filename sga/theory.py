"""Closed forms of the one-step analysis of the smoothing rate r (numpy only).

Notation. ``g_f`` is the gradient of the forget loss l_f, ``g_normal_mean`` (written ḡ) is the mean
of the K-1 normal-sample gradients, so that sum_k g_k = (K-1) ḡ. With c = (K-1)/K the label mass
that r moves onto the normal samples, the two readings of the SGA objective are

    "gls":     L(r) = -(1 - r + r/K) l_f - (r/K) sum_k l_k      (any real r; r = 0 is GA)
    "descent": L(r) = -(1 - r + r/K) l_f + (r/K) sum_k l_k      (r in [0, 1])

One gradient step moves the parameters along d(r) = -∇L(r), which is affine in r:

    "gls":     d(r) = g_f + r c (ḡ - g_f)
    "descent": d(r) = g_f - r c (ḡ + g_f)

``k`` may be ``math.inf``: the limit K -> inf with ḡ held fixed (then c = 1).
The closed forms are tried on a small softmax-regression toy in :mod:`sga.toy` (notebook 01).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
from scipy.optimize import minimize_scalar

Reading = Literal["gls", "descent"]
# reading -> what it minimises; the one list of readings (losses, presets and notebooks use it)
READINGS: dict[str, str] = {
    "gls": "label smoothing applied to GA: minimise -w_f l(x_f) - w_n sum_k l(x_k); r < 0 learns normal data",
    "descent": "minimise -w_f l(x_f) + w_n sum_k l(x_k) with 0 <= r <= 1: normal data always learned",
}
# ||b||^2 below this fraction of ||g_f||^2 + ||ḡ||^2 counts as a zero slope (r has no effect on d).
_DEGENERATE_TOL = 1e-12


def check_reading(reading: str) -> None:
    if reading not in READINGS:
        raise ValueError(f"Unknown SGA reading {reading!r}; choose one of {list(READINGS)}.")


def sga_weights(rate: float, k: int) -> tuple[float, float]:
    """(forget weight, per-normal weight) = (1 - r + r/K, r/K) of the smoothed label over K sequences."""
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"K must be an integer >= 1 (the forget sample plus K-1 normal samples); got {k}.")
    return 1.0 - rate + rate / k, rate / k


def graddiff_weights(rate: float, k: int, reading: str = "gls") -> tuple[float, float]:
    """(forget weight gamma, retain weight alpha) of the GradDiff objective -gamma l_f + alpha mean_k l_k that
    equals SGA's per forget sample: gamma = 1 - r(K-1)/K; alpha = -r(K-1)/K ("gls") or +r(K-1)/K ("descent").

    SGA *is* this GradDiff when the retain term averages the same K-1 normal samples; GradDiff with these
    weights and one retain sample differs from SGA only in how many normal samples each step sees.
    """
    check_rate(rate, reading, k)
    forget_weight, normal_weight = sga_weights(rate, k)
    retain_weight = (k - 1) * (-normal_weight if reading == "gls" else normal_weight)
    if retain_weight < 0:
        raise ValueError(f"At r = {rate} ({reading}) SGA ascends the normal samples (retain weight {retain_weight:.3g} < 0): "
                         "no GradDiff with a non-negative retain weight matches it.")
    return forget_weight, retain_weight


def rate_range(reading: str, k: float = math.inf) -> tuple[float, float]:
    """The interval of smoothing rates ``reading`` is defined for at ``k`` (the one owner of this fact).

    "descent": [0, 1], as its users define it. "gls": r < K/(K-1), open at the top. The forget sample's
    label mass 1 - r(K-1)/K must stay positive, or the objective no longer ascends the forget loss
    (at r = K/(K-1) the forget term vanishes; beyond it SGA would *descend* on the forget sample).
    r <= 1 keeps the forget sample's mass at least each normal sample's (a smoothed label);
    1 < r < K/(K-1) over-smooths (each normal sample gets more mass than the forget sample, which is
    still ascended); any r < 0 is negative label smoothing. K = 1 has no normal samples: every r is GA.
    """
    check_reading(reading)
    if reading == "descent":
        return 0.0, 1.0
    return -math.inf, (math.inf if k == 1 else 1.0 / normal_mass(k))


def rate_interval(reading: str, k: float = math.inf) -> "RateInterval":
    """:func:`rate_range` with its ends' closedness: [0, 1] for "descent", (-inf, K/(K-1)) for "gls"."""
    lo, hi = rate_range(reading, k)
    return RateInterval(lo, hi, lo != -math.inf, reading == "descent")


def check_rate(rate: float, reading: str, k: float = math.inf) -> None:
    """Raise a ValueError naming the valid range if ``rate`` lies outside :func:`rate_interval`."""
    valid = rate_interval(reading, k)
    if rate not in valid:
        shown = f"{'[' if valid.lo_closed else '('}{valid.lo:.6g}, {valid.hi:.6g}{']' if valid.hi_closed else ')'}"
        why = " (the forget sample's weight 1 - r(K-1)/K must stay positive)" if reading == "gls" else ""
        raise ValueError(f"Smoothing rate {rate} is outside {shown}, the valid range of the {reading!r} reading"
                         f"{'' if k == math.inf else f' at K = {k}'}{why}.")


def normal_mass(k: float) -> float:
    """c = (K-1)/K: the label mass per unit of r that moves onto the K-1 normal samples.

    ``k`` is the number of "classes" (1 forget + K-1 normal samples): an integer >= 2, or ``math.inf``.
    """
    if k == math.inf:
        return 1.0
    if not isinstance(k, numbers.Real) or isinstance(k, bool) or not float(k).is_integer() or k < 2:
        raise ValueError(
            f"k must be an integer >= 2 (one forget sample plus at least one normal sample) "
            f"or math.inf for the large-K limit; got {k!r}."
        )
    return (k - 1) / k


def objective_coefficients(rate: float, k: int, reading: Reading = "gls") -> tuple[float, float]:
    """(coefficient of l_f, coefficient of each l_k) in L(r); finite ``k`` only.

    "gls" gives (-(1 - r + r/K), -r/K), "descent" gives (-(1 - r + r/K), +r/K).
    """
    check_reading(reading)
    if k == math.inf:
        raise ValueError("objective_coefficients needs a finite k; per-sample weights vanish as K -> inf.")
    normal_mass(k)
    forget_weight, normal_weight = sga_weights(rate, k)
    return -forget_weight, (-normal_weight if reading == "gls" else normal_weight)


def update_coefficients(rate: float, k: float, reading: Reading = "gls") -> tuple[float, float]:
    """(α_f, α_n) with d(r) = α_f g_f + α_n ḡ: (1 - rc, rc) for "gls" and (1 - rc, -rc) for "descent"."""
    check_reading(reading)
    shift = rate * normal_mass(k)
    return 1 - shift, (shift if reading == "gls" else -shift)


def affine_update(
    g_f: np.ndarray, g_normal_mean: np.ndarray, k: float, reading: Reading = "gls"
) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) with d(r) = a + r b: a = g_f, b = c(ḡ - g_f) ("gls") or b = -c(ḡ + g_f) ("descent")."""
    check_reading(reading)
    g_f, g_n = _as_pair(g_f, g_normal_mean)
    c = normal_mass(k)
    return g_f, (c * (g_n - g_f) if reading == "gls" else -c * (g_n + g_f))


def update_direction(
    g_f: np.ndarray, g_normal_mean: np.ndarray, rate: float, k: float, reading: Reading = "gls"
) -> np.ndarray:
    """d(r) = -∇L(r), the direction one gradient step on L(r) moves the parameters."""
    alpha_f, alpha_n = update_coefficients(rate, k, reading)
    g_f, g_n = _as_pair(g_f, g_normal_mean)
    return alpha_f * g_f + alpha_n * g_n


def optimal_rate(
    g_f: np.ndarray, g_normal_mean: np.ndarray, k: float, reading: Reading = "gls", clip: bool = False
) -> float:
    """The rate r* minimising the one-step update norm ||d(r)||^2: r* = -<a, b> / ||b||^2.

    Assumptions: one plain gradient step (no optimizer state, so the step is proportional to d(r));
    g_f and ḡ are taken at the current parameters and held fixed while r varies; the criterion is the
    squared Euclidean norm of d(r). In closed form, with c = (K-1)/K,

        "gls":     r* = (||g_f||^2 - <g_f, ḡ>) / (c ||g_f - ḡ||^2)
        "descent": r* = (||g_f||^2 + <g_f, ḡ>) / (c ||g_f + ḡ||^2)

    At r* the update is orthogonal to b, so to first order a step changes l_f and the mean normal loss
    by the same amount ("gls") or by opposite amounts ("descent"). ``clip=True`` clips r* to the
    reading's valid range (``rate_range``: [0, 1] for "descent", up to K/(K-1) for "gls"); ||d(r)||^2 is
    a convex parabola, so the clipped value minimises it over that range.

    Raises ValueError when b = 0 (ḡ = g_f for "gls", ḡ = -g_f for "descent", or both gradients zero):
    then d does not depend on r and no rate is singled out.
    """
    g_f, g_n = _as_pair(g_f, g_normal_mean)
    return optimal_rate_from_gram(
        float(g_f @ g_f), float(g_f @ g_n), float(g_n @ g_n), k, reading=reading, clip=clip
    )


def optimal_rate_from_gram(
    ff: float, fn: float, nn: float, k: float, reading: Reading = "gls", clip: bool = False
) -> float:
    """``optimal_rate`` from the inner products ff = <g_f, g_f>, fn = <g_f, ḡ>, nn = <ḡ, ḡ>.

    Useful for large models: the three numbers can be accumulated parameter tensor by tensor.
    """
    check_reading(reading)
    c = normal_mass(k)
    sign = 1.0 if reading == "gls" else -1.0  # "descent" is "gls" with ḡ -> -ḡ
    fn = sign * fn
    slope_sq = ff - 2 * fn + nn  # ||g_f - ḡ||^2 (gls) or ||g_f + ḡ||^2 (descent)
    if slope_sq <= _DEGENERATE_TOL * (ff + nn):
        same = "ḡ = g_f" if reading == "gls" else "ḡ = -g_f"
        raise ValueError(
            f"d(r) does not depend on r (its slope b is zero: {same} or both gradients are zero), "
            f"so ||d(r)||^2 has no unique minimiser under reading {reading!r}."
        )
    rate = (ff - fn) / (c * slope_sq)
    return clip_rate(rate, reading, k) if clip else rate


def optimal_rate_from_gradients(
    forget_grad: np.ndarray, normal_grads: np.ndarray, reading: Reading = "gls", clip: bool = False
) -> float:
    """``optimal_rate`` from a flattened forget gradient [P] and the K-1 normal gradients [K-1, P]."""
    forget_grad = np.asarray(forget_grad, dtype=float).ravel()
    normal_grads = np.asarray(normal_grads, dtype=float)
    if normal_grads.ndim != 2 or normal_grads.shape[1] != forget_grad.size:
        raise ValueError(
            f"normal_grads must have shape [K-1, {forget_grad.size}] (one flattened gradient per normal "
            f"sample); got {normal_grads.shape}."
        )
    return optimal_rate(forget_grad, normal_grads.mean(axis=0), normal_grads.shape[0] + 1, reading, clip)


def optimal_rate_orthogonal(forget_norm: float, normal_norm: float, k: float) -> float:
    """r* when <g_f, ḡ> = 0 (same in both readings): ||g_f||^2 / (c (||g_f||^2 + ||ḡ||^2))."""
    ff, nn = forget_norm**2, normal_norm**2
    if ff + nn == 0:
        raise ValueError("Both gradients are zero: d(r) = 0 for every r, so no rate is singled out.")
    return ff / (normal_mass(k) * (ff + nn))


def optimal_rate_collinear(ratio: float, k: float, reading: Reading = "gls") -> float:
    """r* when ḡ = ratio * g_f (ratio > 0 aligned, < 0 opposed): 1/(c(1 - ratio)) or 1/(c(1 + ratio)).

    Here d(r*) = 0: the criterion picks the rate whose step is zero.
    """
    check_reading(reading)
    denominator = 1 - ratio if reading == "gls" else 1 + ratio
    if denominator == 0:
        raise ValueError(
            f"ratio {ratio} makes d(r) independent of r under reading {reading!r}; no rate is singled out."
        )
    return 1 / (normal_mass(k) * denominator)


def clip_rate(rate: float, reading: str, k: float) -> float:
    lo, hi = rate_range(reading, k)
    return float(min(max(rate, lo), hi))


def first_order_loss_changes(
    g_f: np.ndarray, g_normal_mean: np.ndarray, rate: float | np.ndarray, k: float, reading: Reading = "gls"
) -> tuple[np.ndarray, np.ndarray]:
    """(<g_f, d(r)>, <ḡ, d(r)>): the first-order change of l_f and of the mean normal loss per unit step.

    ``rate`` may be an array; the results then have its shape.
    """
    a, b = affine_update(g_f, g_normal_mean, k, reading)
    g_f, g_n = _as_pair(g_f, g_normal_mean)
    rate = np.asarray(rate, dtype=float)
    return g_f @ a + rate * (g_f @ b), g_n @ a + rate * (g_n @ b)


@dataclass(frozen=True)
class RateInterval:
    """An interval of rates; an infinite end is always open."""

    lo: float
    hi: float
    lo_closed: bool
    hi_closed: bool

    def __contains__(self, rate: float) -> bool:
        above = rate >= self.lo if self.lo_closed else rate > self.lo
        below = rate <= self.hi if self.hi_closed else rate < self.hi
        return bool(above and below)


def _half_line(offset: float, slope: float, strict: bool) -> RateInterval | None:
    """The set {r : offset + r * slope > 0} (strict) or {r : offset + r * slope <= 0} (not strict)."""
    if slope == 0:
        holds = offset > 0 if strict else offset <= 0
        return RateInterval(-math.inf, math.inf, False, False) if holds else None
    root = -offset / slope
    if strict:  # offset + r * slope > 0
        if slope > 0:
            return RateInterval(root, math.inf, False, False)
        return RateInterval(-math.inf, root, False, False)
    if slope > 0:  # offset + r * slope <= 0
        return RateInterval(-math.inf, root, False, True)
    return RateInterval(root, math.inf, True, False)


def _intersect(first: RateInterval | None, second: RateInterval | None) -> RateInterval | None:
    if first is None or second is None:
        return None
    if first.lo > second.lo or (first.lo == second.lo and not first.lo_closed):
        lo, lo_closed = first.lo, first.lo_closed
    else:
        lo, lo_closed = second.lo, second.lo_closed
    if first.hi < second.hi or (first.hi == second.hi and not first.hi_closed):
        hi, hi_closed = first.hi, first.hi_closed
    else:
        hi, hi_closed = second.hi, second.hi_closed
    if lo > hi or (lo == hi and not (lo_closed and hi_closed)):
        return None
    return RateInterval(lo, hi, lo_closed, hi_closed)


def first_order_safe_range(
    g_f: np.ndarray, g_normal_mean: np.ndarray, k: float, reading: Reading = "gls", clip: bool = False
) -> RateInterval | None:
    """Rates for which, to first order, one step raises l_f and does not raise the mean normal loss.

    The two conditions <g_f, d(r)> > 0 and <ḡ, d(r)> <= 0 are linear in r; each gives a half-line (or
    all/no r when its slope is zero), and the result is their intersection, or None when it is empty.
    ``clip=True`` intersects it with the reading's valid range (``rate_range``).
    """
    (forget_offset, normal_offset), (forget_slope, normal_slope) = (
        first_order_loss_changes(g_f, g_normal_mean, r, k, reading) for r in (0.0, 1.0)
    )
    forget_slope, normal_slope = forget_slope - forget_offset, normal_slope - normal_offset
    safe = _intersect(
        _half_line(float(forget_offset), float(forget_slope), strict=True),
        _half_line(float(normal_offset), float(normal_slope), strict=False),
    )
    if clip:
        safe = _intersect(safe, rate_interval(reading, k))
    return safe


def safe_optimal_rate(
    g_f: np.ndarray, g_normal_mean: np.ndarray, k: float, reading: Reading = "gls", clip: bool = False
) -> float:
    """The rate minimising ||d(r)||^2 over the first-order safe range: r* moved to the nearest point
    of that range's closure (||d(r)||^2 is a convex parabola in r).

    Under "descent" this is r* itself whenever d(r*) != 0 (at r*, <g_f, d> = ||d||^2 = -<ḡ, d>); under
    "gls" r* raises both losses equally, so this is the end of the range where <ḡ, d(r)> = 0.
    ``clip`` as in ``first_order_safe_range``. Raises ValueError when the safe range is empty.
    """
    safe = first_order_safe_range(g_f, g_normal_mean, k, reading, clip)
    if safe is None:
        raise ValueError(
            f"No rate is first-order safe under reading {reading!r}"
            f"{' within its valid range' if clip else ''}: every step either lowers the forget loss or raises "
            "the normal loss."
        )
    return float(min(max(optimal_rate(g_f, g_normal_mean, k, reading), safe.lo), safe.hi))


def gram_vectors(ff: float, fn: float, nn: float) -> tuple[np.ndarray, np.ndarray]:
    """Two 2-D vectors (g_f, ḡ) with the inner products ff, fn, nn: every rate quantity here depends on
    the gradients only through them, so a model's gradients can be replaced by these."""
    f = np.array([math.sqrt(ff), 0.0])
    along = fn / f[0] if f[0] > 0 else 0.0
    return f, np.array([along, math.sqrt(max(nn - along**2, 0.0))])


def adaptive_rate(ff: float, fn: float, nn: float, k: float, reading: Reading = "gls") -> tuple[float, bool]:
    """The rate of adaptive SGA for one step, from the gradients' inner products, and whether it is safe.

    r* (``optimal_rate_from_gram``) moved to the nearest point of the first-order safe range within the
    reading's valid range (``safe_optimal_rate`` with ``clip=True``); when that range is empty, r* clipped
    to the valid range, flagged unsafe; when r has no effect on the step (b = 0), r = 0, flagged unsafe.
    Open ends (the gls bound K/(K-1), the strict forget condition) are approached to within 1e-9.
    """
    f_vec, n_vec = gram_vectors(ff, fn, nn)
    try:
        star = optimal_rate_from_gram(ff, fn, nn, k, reading)
    except ValueError:
        return 0.0, False
    safe = first_order_safe_range(f_vec, n_vec, k, reading, clip=True)
    interval, is_safe = (safe, True) if safe is not None else (rate_interval(reading, k), False)
    inset = 1e-9 * (1.0 + abs(star))
    lo = interval.lo if interval.lo_closed else interval.lo + inset
    hi = interval.hi if interval.hi_closed else interval.hi - inset
    return float(min(max(star, lo), hi)), is_safe


def brute_force_rate(
    objective: Callable[[float], float], lo: float, hi: float, grid_size: int = 2001
) -> float:
    """Minimise a scalar function of r on [lo, hi]: the best point of a dense grid, refined by
    bounded Brent search between its grid neighbours. Independent of the closed forms, for checking."""
    if not lo < hi:
        raise ValueError(f"Need lo < hi; got lo={lo}, hi={hi}.")
    grid = np.linspace(lo, hi, grid_size)
    best = int(np.argmin([objective(r) for r in grid]))
    left, right = grid[max(best - 1, 0)], grid[min(best + 1, grid_size - 1)]
    refined = minimize_scalar(objective, bounds=(left, right), method="bounded", options={"xatol": 1e-12})
    return float(refined.x) if refined.fun <= objective(grid[best]) else float(grid[best])


def compare_with_brute_force(
    seed: int,
    n_cases: int,
    k: float,
    reading: Reading = "gls",
    dim: int = 6,
    bracket: tuple[float, float] = (-60.0, 60.0),
    grid_size: int = 801,
) -> dict[str, np.ndarray]:
    """``optimal_rate`` and ``brute_force_rate`` of ||d(r)||^2 on ``n_cases`` random Gaussian pairs
    (g_f ~ N(0, I), ḡ ~ N(0, s^2 I) with s ~ U(0.1, 3)). ``inside`` marks cases whose closed form lies
    inside ``bracket`` (the brute force can only find those)."""
    rng = np.random.default_rng(seed)
    closed, brute = np.empty(n_cases), np.empty(n_cases)
    for case in range(n_cases):
        g_f, g_n = rng.normal(size=dim), rng.normal(size=dim) * rng.uniform(0.1, 3.0)
        closed[case] = optimal_rate(g_f, g_n, k, reading)
        brute[case] = brute_force_rate(
            lambda r: float(np.sum(update_direction(g_f, g_n, r, k, reading) ** 2)), *bracket, grid_size
        )
    return {"closed": closed, "brute": brute, "inside": (closed > bracket[0]) & (closed < bracket[1])}


def _as_pair(g_f: np.ndarray, g_normal_mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g_f = np.asarray(g_f, dtype=float).ravel()
    g_n = np.asarray(g_normal_mean, dtype=float).ravel()
    if g_f.shape != g_n.shape:
        raise ValueError(f"g_f and g_normal_mean must have the same size; got {g_f.size} and {g_n.size}.")
    if not (np.isfinite(g_f).all() and np.isfinite(g_n).all()):
        raise ValueError("Gradients contain NaN or inf; r* is only defined for finite gradients.")
    return g_f, g_n
