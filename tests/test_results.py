import json

import pytest

from sga.results import environment_info, load_results, params_hash, run_name, write_json_atomic


def test_run_name_is_deterministic_and_readable():
    p = {"benchmark": "tofu", "forget_split": "forget10", "method": "sga", "reading": "gls", "rate": -0.4, "k": 4, "normal_source": "random", "seed": 0, "lr": 1e-4}
    name = run_name(p)
    assert name.startswith("tofu-forget10-sga-gls-rate-0.4-k4-random-seed0-")
    assert name == run_name(dict(reversed(list(p.items()))))  # key order does not matter
    assert run_name({**p, "lr": 2e-4}) != name  # every parameter is in the hash
    ga = run_name({**p, "method": "ga"})
    assert "gls" not in ga and "rate" not in ga  # SGA-only keys are left out of other methods' names


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
