import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors  # noqa: E402
import pandas as pd  # noqa: E402

from sga import plots  # noqa: E402

LOG = [{"step": 1, "forget_nll": 0.1, "retain_nll": 0.2, "grad_norm": 1.0},
       {"step": 2, "forget_nll": 0.3, "retain_nll": 0.25, "grad_norm": 2.0}]


def test_save_figure_names_files_by_notebook_number(tmp_path):
    fig = plots.quality_vs_utility(pd.DataFrame({"forget_quality": [0.5], "model_utility": [0.7]}, index=["ga"]))
    path = plots.save_figure(fig, tmp_path / "figures", 2, "tofu-quality")
    assert path == tmp_path / "figures" / "02-tofu-quality.png" and path.stat().st_size > 0


def test_a_method_has_the_same_colour_in_both_figures():
    table = pd.DataFrame({"forget_quality": [1e-4, 1.0, 0.1], "model_utility": [0.7, 0.8, 0.2]},
                         index=["target", "retain", "sga"])
    scatter = plots.quality_vs_utility(table).axes[0]
    scatter_colours = {text.get_text(): mcolors.to_hex(points.get_facecolor()[0])
                       for text, points in zip(scatter.texts, scatter.collections)}
    curves = plots.training_curves({"ga": {"log": LOG}, "sga": {"log": LOG}})
    line_colours = {line.get_label(): mcolors.to_hex(line.get_color()) for line in curves.axes[0].lines}
    assert scatter_colours["sga"] == line_colours["sga"] == mcolors.to_hex(plots.COLORS["sga"])
    assert line_colours["ga"] != line_colours["sga"]
    assert plots.model_color("sga r=+1.0", 0) not in plots.COLORS.values()
