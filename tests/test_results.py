import json

import pytest

from sga.results import compare_results, environment_info, load_results, params_hash, write_json_atomic


def test_params_hash_known_value():
    assert params_hash({"a": 1}) == "f9d86028"  # sha256('{"a": 1}')[:8]


def test_atomic_write_and_load(tmp_path):
    write_json_atomic(tmp_path / "r" / "one.json", {"name": "one", "params": {"method": "ga"}, "summary": {"x": 1.5}, "status": "completed"})
    write_json_atomic(tmp_path / "r" / "two.json", {"name": "two", "params": {"method": "sga"}, "summary": {"x": 2.5}, "status": "diverged"})
    (tmp_path / "r" / "other.json").write_text(json.dumps([1, 2]))
    assert not list((tmp_path / "r").glob("*.tmp"))
    table = load_results(tmp_path)
    assert list(table["run"]) == ["one", "two"] and list(table["x"]) == [1.5, 2.5]


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "bad.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_environment_info_names_versions():
    info = environment_info()
    assert info["packages"]["torch"] and info["python"].count(".") == 2


def test_compare_results_pairs_runs_by_name_and_flags_differences(tmp_path):
    """The same name (same parameters) with other numbers is flagged; wall times do not count."""
    def write(folder, name, value, elapsed):
        write_json_atomic(tmp_path / folder / f"{name}.json", {"name": name, "params": {}, "metrics": {"x": value},
                                                                "log": [{"step": 1, "loss": value, "elapsed": elapsed}]})

    write("a", "tofu-ga-seed0", 1.0, 0.5)
    write("b", "tofu-ga-seed0", 1.0, 9.9)  # only the wall time differs
    write("a", "tofu-npo-seed0", 1.0, 0.5)
    write("b", "tofu-npo-seed0", 2.0, 0.5)
    write("b", "tofu-kl-seed0", 1.0, 0.5)
    table = compare_results(tmp_path / "a", tmp_path / "b")
    assert table.loc["tofu-ga-seed0"].tolist() == [True, True]
    assert table.loc["tofu-npo-seed0"].tolist() == [False, False]
    assert table.loc["tofu-kl-seed0"].isna().all()
