"""Layered presets: every key settable, every bad value refused at once with the valid choices."""

from pathlib import Path

import pytest

from sga import methods, presets
from sga.data.hub import DataUnavailableError

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


def test_layers_common_then_benchmark_then_preset():
    smoke, mini, paper = (presets.resolve("tofu", p) for p in ("smoke", "mini", "paper"))
    assert mini["lr"] == 1e-3 and mini["epochs"] == 4 and mini["cpu_threads"] == 2  # common, then the TOFU block
    assert smoke["epochs"] == 1 and smoke["cpu_threads"] == 1 and smoke["data"]["n_authors"] == 10
    assert paper["lora_rank"] == 16 and paper["compute_dtype"] == "bfloat16" and paper["forget_per_forward"] == 4
    assert paper["lr"] == 1e-4 and paper["template"] == "llama2_chat"  # the benchmark's preset overrides come last
    assert all(mini[o.key] == o.default for m in methods.METHODS.values() for o in m.options)


def test_overrides_merge_and_none_keeps_the_preset():
    p = presets.resolve("tofu", "mini", rate=-0.8, data={"n_authors": 20}, lr=None)
    assert p["rate"] == -0.8 and p["data"]["n_authors"] == 20 and p["data"]["qa_per_author"] == 10
    assert p["lr"] == 1e-3 and p["preset"] == "mini"
    assert presets.resolve("tofu", "mini", max_grad_norm="none")["max_grad_norm"] is None  # "none" switches it off
    assert presets.resolve("tofu", "mini", quantization="none")["quantization"] == "none"  # a string value stays one


@pytest.mark.parametrize("args,overrides,match", [
    (("muse", "mini"), {}, r"Unknown benchmark 'muse'; choose one of \['tofu'"),
    (("tofu", "huge"), {}, r"choose one of \['smoke', 'mini', 'paper'\]"),
    (("tofu", "mini"), {"methods": ["gd"]}, r"unknown methods \['gd'\]; choose from \['ga', 'graddiff'"),
    (("tofu", "mini"), {"forget_split": "forget20"}, r"forget_split must be one of \['forget01', 'forget05', 'forget10'\]"),
    (("tofu", "mini"), {"learning_rate": 1e-3}, r"Unknown parameter 'learning_rate' for tofu; valid ones"),
    (("tofu", "mini"), {"data": {"authors": 3}}, "Unknown keys"),
    (("tofu", "mini"), {"k": 0}, "k .* must be an integer >= 1"),
    (("tofu", "mini"), {"reading": "descent", "rate": -0.4}, r"outside \[0, 1\], the valid range of the 'descent' reading"),
    (("tofu", "mini"), {"reading": "other"}, r"must be one of \['gls', 'descent'\]"),
    (("tofu", "mini"), {"quantization": "int4"}, r"must be one of \['none', 'nf4', 'fp4', 'int8'\]"),
    (("tofu", "mini"), {"batch_size": 0}, "batch_size must be an integer >= 1"),
    (("tofu", "mini"), {"target_model": "org/model"}, "embedded"),
])
def test_bad_parameters_fail_with_the_valid_choices(args, overrides, match):
    with pytest.raises(ValueError, match=match):
        presets.resolve(*args, **overrides)


def test_hub_ids_fail_at_once_offline(monkeypatch, tmp_path):
    params = presets.resolve("tofu", "paper")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match="data_source='locuslab/TOFU'.*'mini' preset"):
        presets.check_sources(params)
    presets.check_sources({**params, "data_source": str(tmp_path), "target_model": str(tmp_path), "retain_model": str(tmp_path)})
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    presets.check_sources(params)  # online: the hub decides


@pytest.mark.parametrize("notebook,benchmark", [("02_tofu_unlearning.ipynb", "tofu")])
def test_every_preset_key_is_a_notebook_parameter(notebook, benchmark):
    """papermill sees every preset key in the notebook's parameters cell (an unparsed line would be dropped)."""
    import papermill as pm

    declared = set(pm.inspect_notebook(str(NOTEBOOKS / notebook)))
    missing = set(presets.parameter_names(benchmark)) - declared
    assert not missing, f"{notebook} cannot set {sorted(missing)} from papermill"
    namespace = {**{key: None for key in declared}, "rate": 0.2, "unrelated": 1}
    assert presets.notebook_overrides(benchmark, namespace)["rate"] == 0.2 and "unrelated" not in presets.notebook_overrides(benchmark, namespace)


def test_theory_settings():
    assert presets.theory_settings("mini") == {"n_random_checks": 300, "brute_grid": 801, "toy_steps": 300, "sweep_points": 17, "toy_seeds": 5}
    with pytest.raises(ValueError, match="choose one of"):
        presets.theory_settings("huge")


@pytest.mark.slow
def test_notebook_02_refuses_a_bad_parameter_before_any_work(tmp_path):
    """papermill with an unknown method fails at the parameter check, naming the valid methods."""
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match=r"unknown methods \['gd'\]; choose from \['ga'"):
        pm.execute_notebook(str(NOTEBOOKS / "02_tofu_unlearning.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                            parameters={"methods": ["gd"], "cache_dir": str(tmp_path / "c"), "output_dir": str(tmp_path / "r"),
                                        "figures_dir": str(tmp_path / "f")}, cwd=str(NOTEBOOKS), progress_bar=False)
    assert not (tmp_path / "c").exists()  # failed before generating data or training a model
