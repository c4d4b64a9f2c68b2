import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from sga import plots  # noqa: E402

LOG = [{"step": 1, "forget_nll": 0.1, "retain_nll": 0.2, "grad_norm": 1.0},
       {"step": 2, "forget_nll": 0.3, "retain_nll": 0.25, "grad_norm": 2.0}]
SUMMARY = {"forget_quality": 1e-3, "model_utility": 0.6, "forget_ks_d": 0.4}


def test_save_figure_names_files_by_notebook_number(tmp_path):
    fig = plots.training_curves({"ga": {"log": LOG}})
    assert plots.save_figure(fig, tmp_path / "figures", 2, "tofu-curves") is None
    path = tmp_path / "figures" / "02-tofu-curves.png"
    assert [p.name for p in (tmp_path / "figures").iterdir()] == [path.name] and path.stat().st_size > 0


def test_a_method_has_the_same_colour_in_every_figure():
    curves = plots.training_curves({"ga": {"log": LOG}, "sga": {"log": LOG}})
    line_colours = {line.get_label(): mcolors.to_hex(line.get_color()) for line in curves.axes[0].lines}
    path = [{"epoch": 1, "forget_quality": 1e-2, "model_utility": 0.5}]
    paths = plots.paths({"sga": [{"trajectory": path}]}, SUMMARY)
    path_colours = {line.get_label(): mcolors.to_hex(line.get_color()) for line in paths.axes[0].lines}
    assert line_colours["sga"] == path_colours["sga"] == mcolors.to_hex(plots.COLORS["sga"])
    assert line_colours["ga"] != line_colours["sga"]
    assert plots.model_color("sga r=+1.0", 0) not in plots.COLORS.values()


def test_paths_start_at_the_start_model_and_follow_the_trajectory():
    path = [{"epoch": 1, "forget_quality": 1e-2, "model_utility": 0.5}, {"epoch": 2, "forget_quality": 1e-1, "model_utility": 0.3}]
    ax = plots.paths({"ga": [{"trajectory": path}]}, SUMMARY).axes[0]
    line = next(line for line in ax.lines if line.get_label() == "ga")
    assert list(line.get_xdata()) == [1e-3, 1e-2, 1e-1] and list(line.get_ydata()) == [0.6, 0.5, 0.3]


def test_truth_ratio_histograms_one_panel_per_model():
    results = {label: {"metrics": {"forget": {"truth_ratios": ratios}}, "summary": SUMMARY}
               for label, ratios in (("retain", [0.5, 1.0, 2.0]), ("target", [0.1, 0.2, 0.3]), ("ga", [1.0, 3.0, 9.0]))}
    fig = plots.truth_ratio_histograms(results)
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titled) == 3 and titled[2].startswith("ga\nD = 0.40")


def test_interval_plot_draws_a_bar_only_where_there_is_an_interval():
    table = pd.DataFrame({"runs": [3, 1], "x": [0.5, 0.2], "x lo": [0.4, float("nan")], "x hi": [0.6, float("nan")]}, index=["sga", "kl"])
    ax = plots.interval_plot(table, [("x", "x", "linear")]).axes[0]
    bars = [line for line in ax.lines if len(line.get_xdata()) == 2]
    assert len(bars) == 1 and list(bars[0].get_xdata()) == [0.4, 0.6]


def _benchmark_table():
    """An interval table as :func:`sga.comparison.interval_table` gives it: (benchmark, label) rows."""
    rows = {("tofu", "GA"): (0.3, 0.2, 0.4), ("tofu", "SGA r=-0.4"): (0.5, 0.4, 0.6), ("tofu", "SGA r=+1"): (0.1, float("nan"), float("nan")),
            ("tofu", "SGA descent r=0.5"): (0.45, 0.35, 0.55), ("tofu", "K=2"): (float("nan"),) * 3,
            ("hp", "GA"): (80.0, 70.0, 90.0), ("hp", "SGA r=-0.4"): (60.0, 50.0, 70.0), ("hp", "SGA r=+1"): (900.0, 800.0, 1000.0),
            ("hp", "SGA descent r=0.5"): (65.0, 60.0, 70.0), ("hp", "K=2"): (55.0, 50.0, 60.0)}
    index = pd.MultiIndex.from_tuples(rows, names=["benchmark", "label"])
    return pd.DataFrame(list(rows.values()), index=index, columns=["u", "u lo", "u hi"])


def _axes(higher):
    from sga.world import Axes
    return Axes("f", "forget", "u", "utility", higher, lambda w, r: {}, "retain")


def test_rate_panels_one_row_per_reading_points_sorted_by_rate():
    axes_of = {"tofu": _axes(True), "hp": _axes(False)}
    rates = {"gls": {"GA": 0.0, "SGA r=-0.4": -0.4, "SGA r=+1": 1.0}, "descent": {"GA": 0.0, "SGA descent r=0.5": 0.5}}
    fig = plots.rate_panels(_benchmark_table(), rates, "u", axes_of, {"K=2": "K = 2"})
    assert len(fig.axes) == 4  # 2 readings x 2 benchmarks
    tofu_gls, hp_gls, tofu_descent, hp_descent = fig.axes
    assert list(tofu_gls.lines[0].get_xdata()) == [-0.4, 0.0, 1.0] and list(tofu_gls.lines[0].get_ydata()) == [0.5, 0.3, 0.1]
    assert list(hp_descent.lines[0].get_xdata()) == [0.0, 0.5] and hp_descent.get_yscale() == "log"
    assert "descent" in tofu_descent.get_xlabel()
    horizontal = lambda ax: [line for line in ax.lines if line.get_linestyle() == "--"]  # noqa: E731
    assert horizontal(tofu_gls) == [] and list(horizontal(hp_gls)[0].get_ydata()) == [55.0, 55.0]  # K=2 has no TOFU value


def test_interval_panels_skip_missing_values_and_mark_the_baseline():
    axes_of = {"tofu": _axes(True), "hp": _axes(False)}
    labels = ["SGA r=-0.4", "SGA descent r=0.5", "K=2"]
    fig = plots.interval_panels(_benchmark_table(), labels, "u", axes_of, baseline="SGA r=-0.4")
    tofu, hp = fig.axes
    bars = lambda ax: sorted(tuple(line.get_xdata()) for line in ax.lines if len(line.get_xdata()) == 2 and line.get_linestyle() == "-")  # noqa: E731
    assert bars(tofu) == [(0.35, 0.55), (0.4, 0.6)]  # K=2 has no TOFU value: no row drawn
    assert bars(hp) == [(50.0, 60.0), (50.0, 70.0), (60.0, 70.0)] and hp.get_xscale() == "log"
    baseline = [line for line in tofu.lines if line.get_linestyle() == "--"]
    assert list(baseline[0].get_xdata()) == [0.5, 0.5]
    assert [t.get_text() for t in tofu.get_yticklabels()] == labels


def test_forest_draws_each_comparison_with_both_intervals_and_marks_holm_significance():
    table = pd.DataFrame({"benchmark": ["b", "b"], "world": [0, "pooled"], "label": ["SGA", "SGA"], "baseline": ["GA", "GA"],
                          "scale": ["difference"] * 2, "mean": [0.2, -0.1], "lo": [0.1, -0.3], "hi": [0.3, 0.1],
                          "lo_adj": [0.05, -0.4], "hi_adj": [0.35, 0.2], "p_holm": [0.01, 0.5]})
    table.attrs["alpha"] = 0.05
    fig = plots.forest(table, {"b": _axes(True)})
    ax = fig.axes[0]
    points = [line for line in ax.lines if line.get_marker() == "o"]
    assert [tuple(p.get_xdata()) for p in points] == [(0.2,), (-0.1,)]
    assert [mcolors.to_hex(p.get_color()) for p in points] == [mcolors.to_hex("C3"), mcolors.to_hex("C0")]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["SGA - GA (0)", "SGA - GA (pooled)"]
    assert list(ax.get_yticks()) == [1, 0]  # the first comparison on top


def test_ladder_panels_show_the_share_diverged_per_rate_and_method():
    table = pd.DataFrame({"ladder": ["SGD"] * 4, "benchmark": ["b"] * 4, "method": ["GA", "GA", "SGA", "SGA"],
                          "lr": [3.0, 1.0, 1.0, 3.0], "diverged": [1.0, 0.0, 0.0, 1 / 3]})
    ax = plots.ladder_panels(table).axes[0]
    assert [tuple(line.get_xdata()) for line in ax.lines] == [(1.0, 3.0), (1.0, 3.0)]  # sorted by rate
    assert tuple(ax.lines[1].get_ydata()) == (0.0, pytest.approx(1 / 3))
