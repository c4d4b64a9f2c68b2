"""Closed forms of sga.theory against exact special cases, brute force and independent formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sga import theory, toy

READINGS = ["gls", "descent"]
random_case = dict(
    seed=st.integers(0, 2**32 - 1),
    dim=st.integers(2, 8),
    k=st.sampled_from([2, 3, 4, 8, 32, math.inf]),
    reading=st.sampled_from(READINGS),
)


def _random_pair(seed: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=dim), rng.normal(size=dim) * rng.uniform(0.1, 3.0)


def _direction_from_objective(g_f, normal_grads, rate, k, reading):
    """-∇L written out from the objective with K-1 separate normal gradients (independent of the module)."""
    forget_weight, normal_weight = 1 - rate + rate / k, rate / k
    sign = -1.0 if reading == "gls" else 1.0  # coefficient sign of the normal terms in L
    gradient = -forget_weight * g_f + sign * normal_weight * normal_grads.sum(axis=0)
    return -gradient


# --- weights and the update direction ---------------------------------------------------------------


def test_objective_and_update_coefficients_exact():
    assert theory.objective_coefficients(0.4, 4, "gls") == pytest.approx((-0.7, -0.1))
    assert theory.objective_coefficients(0.4, 4, "descent") == pytest.approx((-0.7, 0.1))
    assert theory.update_coefficients(0.4, 4, "gls") == pytest.approx((0.7, 0.3))
    assert theory.update_coefficients(0.4, 4, "descent") == pytest.approx((0.7, -0.3))
    assert theory.update_coefficients(0.4, math.inf, "gls") == pytest.approx((0.6, 0.4))
    # r = 0 is gradient ascent on the forget loss alone, in both readings
    for reading in READINGS:
        assert theory.update_coefficients(0.0, 5, reading) == (1.0, 0.0)


@pytest.mark.parametrize("reading", READINGS)
@pytest.mark.parametrize("k", [2, 3, 7])
def test_update_direction_is_minus_gradient_of_objective(reading, k):
    rng = np.random.default_rng(k)
    g_f, normal_grads = rng.normal(size=6), rng.normal(size=(k - 1, 6))
    a, b = theory.affine_update(g_f, normal_grads.mean(axis=0), k, reading)
    for rate in (-1.3, 0.0, 0.25, 1.0):
        expected = _direction_from_objective(g_f, normal_grads, rate, k, reading)
        got = theory.update_direction(g_f, normal_grads.mean(axis=0), rate, k, reading)
        np.testing.assert_allclose(got, expected, atol=1e-12)
        np.testing.assert_allclose(a + rate * b, expected, atol=1e-12)


# --- the minimum-norm rate ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, derandomize=True)
@given(**random_case)
def test_optimal_rate_matches_brute_force(seed, dim, k, reading):
    g_f, g_n = _random_pair(seed, dim)
    closed = theory.optimal_rate(g_f, g_n, k, reading)

    def norm_sq(rate: float) -> float:
        return float(np.sum(theory.update_direction(g_f, g_n, rate, k, reading) ** 2))

    lo, hi = -60.0, 60.0
    brute = theory.brute_force_rate(norm_sq, lo, hi, grid_size=601)
    assert norm_sq(closed) <= norm_sq(brute) + 1e-12
    if lo + 1e-6 < brute < hi - 1e-6:
        assert closed == pytest.approx(brute, abs=1e-5 * max(1.0, abs(closed)))
    else:  # the minimiser lies outside the bracket: the closed form must too
        assert not lo < closed < hi


@settings(max_examples=100, deadline=None, derandomize=True)
@given(**random_case)
def test_descent_reading_is_gls_with_negated_normal_gradient(seed, dim, k, reading):
    g_f, g_n = _random_pair(seed, dim)
    assert theory.optimal_rate(g_f, g_n, k, "descent") == pytest.approx(
        theory.optimal_rate(g_f, -g_n, k, "gls"), rel=1e-10
    )


@settings(max_examples=100, deadline=None, derandomize=True)
@given(**random_case)
def test_loss_changes_at_optimal_rate(seed, dim, k, reading):
    """At r*, d ⟂ b: l_f rises by ||d||^2 and the normal loss by +||d||^2 (gls) or -||d||^2 (descent)."""
    g_f, g_n = _random_pair(seed, dim)
    rate = theory.optimal_rate(g_f, g_n, k, reading)
    step_sq = float(np.sum(theory.update_direction(g_f, g_n, rate, k, reading) ** 2))
    forget_change, normal_change = theory.first_order_loss_changes(g_f, g_n, rate, k, reading)
    scale = 1e-9 * (1 + np.sum(g_f**2) + np.sum(g_n**2))
    assert forget_change == pytest.approx(step_sq, abs=scale)
    assert normal_change == pytest.approx(step_sq if reading == "gls" else -step_sq, abs=scale)


def test_orthogonal_gradients_exact():
    g_f, g_n = np.array([3.0, 0.0]), np.array([0.0, 4.0])
    for reading in READINGS:  # 9 / ((3/4) * 25)
        assert theory.optimal_rate(g_f, g_n, 4, reading) == pytest.approx(0.48)
    assert theory.optimal_rate_orthogonal(3.0, 4.0, 4) == pytest.approx(0.48)
    assert theory.optimal_rate_orthogonal(3.0, 4.0, math.inf) == pytest.approx(0.36)


@pytest.mark.parametrize(
    ("ratio", "k", "gls_rate", "descent_rate"),
    [
        (0.5, 2, 4.0, 4.0 / 3.0),  # aligned, K = 2: 1/(c(1-ρ)), 1/(c(1+ρ)) with c = 1/2
        (-2.0, 3, 0.5, -1.5),  # opposed, c = 2/3
        (3.0, math.inf, -0.5, 0.25),  # aligned, K -> inf: c = 1
    ],
)
def test_collinear_gradients_exact_and_step_vanishes(ratio, k, gls_rate, descent_rate):
    g_f = np.array([1.0, -2.0, 0.5])
    for reading, expected in (("gls", gls_rate), ("descent", descent_rate)):
        got = theory.optimal_rate(g_f, ratio * g_f, k, reading)
        assert got == pytest.approx(expected)
        assert theory.optimal_rate_collinear(ratio, k, reading) == pytest.approx(expected)
        np.testing.assert_allclose(theory.update_direction(g_f, ratio * g_f, got, k, reading), 0, atol=1e-12)


def test_rate_scales_as_k_over_k_minus_one():
    g_f, g_n = _random_pair(7, 5)
    limit = theory.optimal_rate(g_f, g_n, math.inf)
    assert theory.optimal_rate(g_f, g_n, 2) == pytest.approx(2 * limit)
    assert theory.optimal_rate(g_f, g_n, 10) == pytest.approx(10 / 9 * limit)


def test_clip_to_valid_range():
    g_f = np.array([1.0, 0.0])
    assert theory.optimal_rate(g_f, 0.5 * g_f, 2, "descent", clip=True) == 1.0  # r* = 4/3
    assert theory.optimal_rate(g_f, -2.0 * g_f, 3, "descent", clip=True) == 0.0  # r* = -1.5
    assert theory.optimal_rate(g_f, 0.5 * g_f, 2, "gls", clip=False) == pytest.approx(4.0)
    assert theory.optimal_rate(g_f, 0.5 * g_f, 2, "gls", clip=True) == 2.0  # gls ends at K/(K-1), where the forget weight is 0
    assert theory.optimal_rate(g_f, 0.5 * g_f, 2, "gls", clip=True) == theory.rate_range("gls", 2)[1]


def test_optimal_rate_from_gradients_and_gram():
    rng = np.random.default_rng(3)
    g_f, normal_grads = rng.normal(size=12), rng.normal(size=(3, 12))
    expected = theory.optimal_rate(g_f, normal_grads.mean(axis=0), 4, "descent")
    assert theory.optimal_rate_from_gradients(g_f, normal_grads, "descent") == pytest.approx(expected)
    g_n = normal_grads.mean(axis=0)
    gram = (g_f @ g_f, g_f @ g_n, g_n @ g_n)
    assert theory.optimal_rate_from_gram(*gram, 4, "descent") == pytest.approx(expected)


# --- invalid input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 0, 2.5, -3, True, "4"])
def test_invalid_k(k):
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        theory.optimal_rate(np.ones(2), np.zeros(2), k)


@pytest.mark.parametrize(
    ("g_f", "g_n", "reading"),
    [
        ([1.0, 2.0], [1.0, 2.0], "gls"),  # ḡ = g_f
        ([1.0, 2.0], [-1.0, -2.0], "descent"),  # ḡ = -g_f
        ([0.0, 0.0], [0.0, 0.0], "gls"),
        ([0.0, 0.0], [0.0, 0.0], "descent"),
    ],
)
def test_degenerate_slope(g_f, g_n, reading):
    with pytest.raises(ValueError, match="does not depend on r"):
        theory.optimal_rate(np.array(g_f), np.array(g_n), 4, reading)


def test_other_invalid_inputs():
    with pytest.raises(ValueError, match="Unknown SGA reading 'ga'"):
        theory.optimal_rate(np.ones(2), np.zeros(2), 4, "ga")
    with pytest.raises(ValueError, match="same size"):
        theory.optimal_rate(np.ones(2), np.zeros(3), 4)
    with pytest.raises(ValueError, match="NaN or inf"):
        theory.optimal_rate(np.array([1.0, np.nan]), np.zeros(2), 4)
    with pytest.raises(ValueError, match="shape"):
        theory.optimal_rate_from_gradients(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="independent of r"):
        theory.optimal_rate_collinear(1.0, 4, "gls")
    with pytest.raises(ValueError, match="Both gradients are zero"):
        theory.optimal_rate_orthogonal(0.0, 0.0, 4)
    with pytest.raises(ValueError, match="finite k"):
        theory.objective_coefficients(0.1, math.inf)
    with pytest.raises(ValueError, match="lo < hi"):
        theory.brute_force_rate(abs, 1.0, 1.0)


# --- the first-order safe range ------------------------------------------------------------------------


def test_safe_range_exact():
    g_f, g_n = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    # gls: l_f rises iff 1 - r/2 > 0; normal loss does not rise iff r/2 <= 0
    interval = theory.RateInterval
    assert theory.first_order_safe_range(g_f, g_n, 2, "gls") == interval(-math.inf, 0.0, False, True)
    # descent: same forget condition; normal condition -r/2 <= 0
    assert theory.first_order_safe_range(g_f, g_n, 2, "descent") == interval(0.0, 2.0, True, False)
    assert theory.first_order_safe_range(g_f, g_n, 2, "descent", clip=True) == interval(0.0, 1.0, True, True)
    # gls with ||ḡ||^2 < <g_f, ḡ> < ||g_f||^2: lowering the normal loss always lowers l_f too
    assert theory.first_order_safe_range(np.array([2.0, 0.0]), np.array([1.0, 0.5]), 4, "gls") is None
    assert 0.0 in theory.RateInterval(0.0, 1.0, True, False)
    assert 1.0 not in theory.RateInterval(0.0, 1.0, True, False)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(**random_case, clip=st.booleans())
def test_safe_range_matches_grid(seed, dim, k, reading, clip):
    g_f, g_n = _random_pair(seed, dim)
    safe = theory.first_order_safe_range(g_f, g_n, k, reading, clip)
    c = 1.0 if k == math.inf else (k - 1) / k
    sign = 1.0 if reading == "gls" else -1.0
    lo, hi = theory.rate_range(reading, k) if clip else (-math.inf, math.inf)
    rates = np.linspace(-30, 30, 1201)
    directions = (1 - rates[:, None] * c) * g_f + sign * rates[:, None] * c * g_n
    expected = (directions @ g_f > 0) & (directions @ g_n <= 0) & (lo <= rates) & (rates <= hi)
    if safe is None:
        assert not expected.any()
        return
    away_from_ends = np.minimum(abs(rates - safe.lo), abs(rates - safe.hi)) > 1e-9
    inside = np.array([rate in safe for rate in rates])
    np.testing.assert_array_equal(inside[away_from_ends], expected[away_from_ends])


@settings(max_examples=100, deadline=None, derandomize=True)
@given(**random_case)
def test_safe_optimal_rate(seed, dim, k, reading):
    g_f, g_n = _random_pair(seed, dim)
    safe = theory.first_order_safe_range(g_f, g_n, k, reading)
    if safe is None:
        with pytest.raises(ValueError, match="No rate is first-order safe"):
            theory.safe_optimal_rate(g_f, g_n, k, reading)
        return
    rate = theory.safe_optimal_rate(g_f, g_n, k, reading)
    if reading == "descent":  # r* is always first-order safe there
        assert rate == pytest.approx(theory.optimal_rate(g_f, g_n, k, reading))
    else:  # r* raises the normal loss, so the answer is where the step is orthogonal to ḡ
        assert rate == safe.hi
        normal_change = float(g_n @ theory.update_direction(g_f, g_n, rate, k, reading))
        assert normal_change == pytest.approx(0.0, abs=1e-9)


# --- brute force and the toy ---------------------------------------------------------------------------


def test_brute_force_rate_known_minimisers():
    assert theory.brute_force_rate(lambda r: (r - 1.234) ** 2, -10, 10) == pytest.approx(1.234, abs=1e-8)
    assert theory.brute_force_rate(lambda r: (r - 5.0) ** 2, 0.0, 1.0) == pytest.approx(1.0, abs=1e-8)


def test_softmax_cross_entropy_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    weights, x, y = rng.normal(size=(4, 3)), rng.normal(size=(7, 4)), rng.integers(0, 3, 7)
    loss, grad = toy.softmax_cross_entropy(weights, x, y)
    eps = 1e-6
    numeric = np.zeros_like(weights)
    for index in np.ndindex(weights.shape):
        bump = np.zeros_like(weights)
        bump[index] = eps
        up = toy.softmax_cross_entropy(weights + bump, x, y)[0]
        down = toy.softmax_cross_entropy(weights - bump, x, y)[0]
        numeric[index] = (up - down) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, atol=1e-7)
    probabilities = np.exp(x @ weights) / np.exp(x @ weights).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(probabilities[np.arange(7), y])))


def test_toy_is_seeded_and_dynamic_rate_follows_closed_form():
    first, second = toy.make_toy_problem(seed=1, k=3), toy.make_toy_problem(seed=1, k=3)
    np.testing.assert_array_equal(first.weights, second.weights)
    np.testing.assert_array_equal(first.normal_x, second.normal_x)
    assert first.normal_x.shape[0] == 2 * first.forget_x.shape[0]
    history = toy.run_toy_unlearning(first, "dynamic", "descent", steps=5)
    g_f, g_n = toy.toy_gradients(first.weights, first)
    assert history["optimal_rate"][0] == pytest.approx(theory.optimal_rate(g_f, g_n, 3, "descent"))
    np.testing.assert_allclose(history["rate"], np.clip(history["optimal_rate"], 0, 1))
    assert len(history["forget_loss"]) == 6 and len(history["rate"]) == 5
    np.testing.assert_array_equal(history["weights"][0], first.weights)
    diagnostics = toy.toy_rate_diagnostics(first, history["weights"][:2], "descent")
    np.testing.assert_allclose(diagnostics["optimal_rate"], history["optimal_rate"][:2])
    safe = theory.first_order_safe_range(g_f, g_n, 3, "descent")
    assert (diagnostics["safe_lo"][0], diagnostics["safe_hi"][0]) == (safe.lo, safe.hi)


@pytest.mark.parametrize("reading", READINGS)
def test_first_order_changes_match_measured_toy_slopes(reading):
    problem = toy.make_toy_problem(seed=2, k=4)
    g_f, g_n = toy.toy_gradients(problem.weights, problem)
    for rate in (-1.0, 0.0, 0.6):
        direction = theory.update_direction(g_f, g_n, rate, 4, reading)
        predicted = theory.first_order_loss_changes(g_f, g_n, rate, 4, reading)
        measured = toy.toy_loss_slopes(problem, problem.weights, direction)
        np.testing.assert_allclose(measured, predicted, rtol=1e-5, atol=1e-10)


def test_compare_with_brute_force_agrees():
    result = theory.compare_with_brute_force(seed=0, n_cases=10, k=4, reading="descent", grid_size=201)
    inside = result["inside"]
    assert inside.sum() >= 8
    np.testing.assert_allclose(result["closed"][inside], result["brute"][inside], atol=1e-5)


def test_first_step_reaching():
    assert toy.first_step_reaching(np.array([0.1, 0.5, 2.0, 1.0, 3.0]), 1.0) == 2
    assert toy.first_step_reaching(np.array([0.1, 0.5]), 1.0) is None


def test_toy_gradient_ascent_raises_forget_loss():
    problem = toy.make_toy_problem(seed=0)
    history = toy.run_toy_unlearning(problem, 0.0, steps=20)
    assert np.all(np.diff(history["forget_loss"]) > 0)
    assert history["forget_accuracy"][-1] < history["forget_accuracy"][0]
    with pytest.raises(ValueError, match="'dynamic'"):
        toy.run_toy_unlearning(problem, "best")


@pytest.mark.parametrize(
    "gram,k,reading,expected",
    [
        ((1.0, 0.0, 1.0), 4, "gls", (0.0, True)),  # r* = 2/3 raises the normal loss; the safe range is r <= 0
        ((1.0, 0.5, 1.0), 4, "gls", (-4 / 3, True)),  # learn the normal data just enough: <ḡ, d> = 0.5 + 0.375 r = 0
        ((1.0, 2.0, 5.0), 4, "gls", (-8 / 9, True)),  # safe (-4/3, -8/9]; r* = -2/3 lies above it
        ((20.0, 1.0, 0.1), 2, "descent", (1.0, False)),  # safe needs r >= 1.82 > 1: none in [0, 1]; r* = 1.90 clipped
        ((1.0, 1.0, 1.0), 4, "gls", (0.0, False)),  # ḡ = g_f: r changes nothing
    ],
)
def test_adaptive_rate_exact(gram, k, reading, expected):
    rate, safe = theory.adaptive_rate(*gram, k, reading)
    assert rate == pytest.approx(expected[0], abs=1e-8) and safe is expected[1]
    if safe:  # first order: the step does not raise the normal loss and raises the forget loss
        f_vec, n_vec = theory.gram_vectors(*gram)
        forget_change, normal_change = theory.first_order_loss_changes(f_vec, n_vec, rate, k, reading)
        assert forget_change > 0 and normal_change <= 1e-9


def test_gram_vectors_have_the_inner_products():
    f, n = theory.gram_vectors(4.0, -1.5, 2.0)
    assert (f @ f, f @ n, n @ n) == pytest.approx((4.0, -1.5, 2.0))


def test_toy_settings_per_preset():
    assert toy.settings("mini") == {"n_random_checks": 300, "brute_grid": 801, "toy_steps": 300, "sweep_points": 17, "toy_seeds": 5}
    with pytest.raises(ValueError, match="choose one of"):
        toy.settings("huge")
