"""Layered presets into typed settings: every key settable, every bad value refused at once, naming the key."""

import time
from pathlib import Path

import pytest

from sga import methods, presets
from sga.data.hub import DataUnavailableError
from sga.specs import Spec

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


def test_layers_defaults_then_benchmark_then_preset():
    smoke, mini, paper = (presets.resolve("tofu", p) for p in ("smoke", "mini", "paper"))
    assert mini.training.lr == 1e-3 and mini.training.epochs == 4 and mini.world.cpu_threads == 2  # defaults, then the TOFU block
    assert smoke.training.epochs == 1 and smoke.world.cpu_threads == 1 and smoke.world.data.n_authors == 10 and smoke.plan.seeds == (0,)
    assert paper.training.lora_rank == 16 and paper.loading.compute_dtype == "bfloat16" and paper.training.forget_per_forward == 4
    assert paper.training.lr == 1e-4 and paper.world.template == "llama2_chat"  # the benchmark's preset layer comes last
    assert {o: mini.values()[o] for o in methods.option_defaults()} == methods.option_defaults()
    assert presets.resolve("muse_news", "mini").world.max_length == 256 and presets.resolve("harry_potter", "mini").world.template == "raw"


def test_overrides_merge_and_none_keeps_the_preset():
    s = presets.resolve("tofu", "mini", rate=-0.8, data={"n_authors": 20}, lr=None)
    assert s.options_of("sga").rate == -0.8 and s.world.data.n_authors == 20 and s.world.data.qa_per_author == 10
    assert s.training.lr == 1e-3 and s.preset == "mini"
    assert presets.resolve("tofu", "mini", max_grad_norm="none").training.max_grad_norm is None  # "none" switches it off
    assert presets.resolve("tofu", "mini", quantization="none").loading.quantization == "none"  # a string value stays one
    assert presets.resolve("harry_potter", "smoke", prompt_lengths=[6, 12]).world.prompt_lengths == (6, 12)  # lists become tuples


def test_settings_are_hashable_and_equal_for_equal_parameters():
    assert presets.resolve("tofu", "mini") == presets.resolve("tofu", "mini", lr=1e-3)
    assert len({presets.resolve("tofu", "mini"), presets.resolve("tofu", "mini", lr=1e-3)}) == 1


@pytest.mark.parametrize("args,overrides,match", [
    (("muse", "mini"), {}, r"Unknown benchmark 'muse'; choose one of \['tofu'"),
    (("tofu", "huge"), {}, r"choose one of \['smoke', 'mini', 'paper'\]"),
    (("tofu", "mini"), {"methods": ["gd"]}, r"unknown methods \['gd'\]; choose from \['ga', 'graddiff'"),
    (("tofu", "mini"), {"forget_split": "forget20"}, r"forget_split must be one of \['forget01', 'forget05', 'forget10'\]"),
    (("tofu", "mini"), {"learning_rate": 1e-3}, r"Unknown parameter 'learning_rate' for tofu; valid ones"),
    (("tofu", "mini"), {"data": {"authors": 3}}, r"Unknown keys \['authors'\] in 'data'"),
    (("tofu", "mini"), {"data": {"n_authors": 0}}, r"Parameter data.n_authors must be an integer >= 1"),
    (("tofu", "mini"), {"k": 0}, "k .* must be an integer >= 1"),
    (("tofu", "mini"), {"k": "four"}, "k .* must be an integer >= 1, got 'four'"),
    (("tofu", "mini"), {"reading": "descent", "rate": -0.4}, r"outside \[0, 1\], the valid range of the 'descent' reading"),
    (("tofu", "mini"), {"reading": "other"}, r"must be one of \['gls', 'descent'\]"),
    (("tofu", "mini"), {"quantization": "int4"}, r"must be one of \['none', 'nf4', 'fp4', 'int8'\]"),
    (("tofu", "mini"), {"batch_size": 0}, "batch_size must be an integer >= 1"),
    (("tofu", "mini"), {"seed": -1}, "seed must be an integer >= 0"),
    (("tofu", "mini"), {"target_model": "org/model"}, "embedded"),
    (("muse_news", "smoke"), {"chunk_tokens": 200}, "plus BOS must fit in max_length"),
])
def test_bad_parameters_fail_with_the_valid_choices(args, overrides, match):
    with pytest.raises(ValueError, match=match):
        presets.resolve(*args, **overrides)


def test_hub_ids_fail_at_once_offline(monkeypatch, tmp_path):
    world = presets.resolve("tofu", "paper").world
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match="data_source='locuslab/TOFU'.*'mini' preset"):
        presets.check_sources(world)
    local = presets.resolve("tofu", "paper", data_source=str(tmp_path), target_model=str(tmp_path), retain_model=str(tmp_path)).world
    presets.check_sources(local)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    presets.check_sources(world)  # online: the hub decides


@pytest.mark.parametrize("notebook,benchmark", [("02_tofu_unlearning.ipynb", "tofu"), ("04_muse_news.ipynb", "muse_news")])
def test_every_parameter_is_a_notebook_parameter(notebook, benchmark):
    """papermill sees every parameter in the notebook's parameters cell (an unparsed line would be dropped)."""
    import papermill as pm

    declared = set(pm.inspect_notebook(str(NOTEBOOKS / notebook)))
    missing = set(presets.parameter_names(benchmark)) - declared
    assert not missing, f"{notebook} cannot set {sorted(missing)} from papermill"
    namespace = {**{key: None for key in declared}, "rate": 0.2, "unrelated": 1}
    assert presets.notebook_overrides(benchmark, namespace)["rate"] == 0.2 and "unrelated" not in presets.notebook_overrides(benchmark, namespace)


def test_the_table_shows_every_parameter_but_the_nested_sizes():
    settings = presets.resolve("tofu", "smoke")
    table = settings.table()
    assert list(table.index[:2]) == ["benchmark", "preset"] and table.loc["rate", "value"] == -0.4
    assert set(table.index) == {"benchmark", "preset"} | {k for k, v in settings.values().items() if not isinstance(v, Spec)}


def test_papermill_parameters_the_notebook_does_not_declare_are_refused():
    history = ["", 'preset = "mini"\nrate = None\n', '# Parameters\npreset = "smoke"\nlearning_rate = 0.001\n', "x = 1"]
    with pytest.raises(ValueError, match=r"Unknown parameters \['learning_rate'\] passed to this notebook; it declares \['preset', 'rate'\]"):
        presets.check_injected({"In": history})
    presets.check_injected({"In": history[:2]})  # not run by papermill
    presets.check_injected({"In": ["", 'preset = "mini"\n', '# Parameters\npreset = "smoke"\n']})


@pytest.mark.slow
@pytest.mark.parametrize("parameters,match", [
    ({"learning_rate": 1e-3}, r"Unknown parameters \['learning_rate'\] passed to this notebook"),
    ({"k": "four"}, r"k \(sga: K: the forget sample plus K-1 normal samples\) must be an integer >= 1, got 'four'"),
    ({"rate": 5.0}, r"Parameter rate: Smoothing rate 5.0 is outside"),
    ({"methods": ["gd"]}, r"unknown methods \['gd'\]; choose from \['ga'"),
])
def test_notebook_02_refuses_a_bad_parameter_before_any_work(tmp_path, parameters, match):
    """Through papermill, an unknown key, a wrong type and an impossible value fail at once, naming the key."""
    import papermill as pm

    began = time.perf_counter()
    with pytest.raises(pm.PapermillExecutionError, match=match):
        pm.execute_notebook(str(NOTEBOOKS / "02_tofu_unlearning.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                            parameters={**parameters, "cache_dir": str(tmp_path / "c"), "output_dir": str(tmp_path / "r"),
                                        "figures_dir": str(tmp_path / "f")}, cwd=str(NOTEBOOKS), progress_bar=False)
    assert time.perf_counter() - began < 60
    assert not (tmp_path / "c").exists()  # failed before generating data or training a model
