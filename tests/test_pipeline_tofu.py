"""The TOFU pipeline end to end on the smoke preset: one JSON per run, reused, adapters kept; clear errors."""

import json

import pytest

from sga import presets
from sga.data.hub import DataUnavailableError
from sga.pipelines import tofu


def test_presets_resolve_and_reject():
    p = presets.resolve("tofu", "mini", rate=-0.8, data={"n_authors": 20})
    assert p["rate"] == -0.8 and p["data"]["n_authors"] == 20 and p["data"]["qa_per_author"] == 8 and p["preset"] == "mini"
    assert presets.resolve("tofu", "mini", rate=None)["rate"] == presets.PRESETS["tofu"]["mini"]["rate"]
    with pytest.raises(ValueError, match=r"choose one of \['smoke', 'mini', 'paper'\]"):
        presets.resolve("tofu", "huge")
    with pytest.raises(ValueError, match="choose one of"):
        presets.resolve("muse", "mini")
    with pytest.raises(ValueError, match="Unknown parameter 'learning_rate'"):
        presets.resolve("tofu", "mini", learning_rate=1e-3)
    with pytest.raises(ValueError, match="Unknown keys"):
        presets.resolve("tofu", "mini", data={"authors": 3})


def test_hub_source_offline_names_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailableError, match="mini"):
        tofu.prepare(presets.resolve("tofu", "paper"), tmp_path / "cache", tmp_path / "runs")


@pytest.fixture(scope="module")
def smoke_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tofu")
    params = presets.resolve("tofu", "smoke", methods=["ga", "sga"])
    params["progress"] = False
    return tofu.prepare(params, root / "cache", root / "runs")


def test_one_result_per_run_reused_and_complete(smoke_setup):
    ga = tofu.run_method(smoke_setup, "ga")
    path = smoke_setup.out_dir / f"{ga['name']}.json"
    stamp = path.stat().st_mtime_ns
    assert ga["status"] == "completed" and set(ga["summary"]) == {"forget_quality", "model_utility", "forget_rouge_l", "retain_rouge_l"}
    assert json.loads(path.read_text())["params"]["method"] == "ga" and "rate" not in ga["params"]
    assert ga["environment"]["packages"]["torch"]
    assert (smoke_setup.out_dir / ga["name"] / "adapter").is_dir() and not (smoke_setup.out_dir / ga["name"] / "checkpoint").exists()
    assert tofu.run_method(smoke_setup, "ga") == json.loads(path.read_text()) and path.stat().st_mtime_ns == stamp
    sga_run = tofu.run_method(smoke_setup, "sga")
    assert sga_run["name"] != ga["name"] and sga_run["params"]["rate"] == -0.4
    assert all("normal_nll" in step for step in sga_run["log"])
    table = tofu.results_table({"ga": ga, "sga": sga_run, "retain": tofu.reference(smoke_setup, "retain")})
    assert table.loc["retain", "forget_quality"] == 1.0  # KS p-value of a sample against itself


def test_unknown_method_and_split(smoke_setup):
    with pytest.raises(ValueError, match="choose one of"):
        tofu.run_method(smoke_setup, "rmu")
    with pytest.raises(ValueError, match="forget01"):
        tofu.prepare(presets.resolve("tofu", "smoke", forget_split="forget20"), "/tmp/unused", "/tmp/unused")
