"""Checks every benchmark's smoke world must pass, called from each benchmark's pipeline tests."""

from sga import experiment


def flat_run(world) -> None:
    """FLAT runs with template answers, logs both probabilities and counts its token passes and wall time."""
    flat = experiment.run_method(world, "flat")
    assert flat["status"] == "completed" and flat["params"]["options"] == {"divergence": "tv"} and "summary" in flat
    assert all({"forget_prob", "template_prob"} <= set(step) for step in flat["log"])
    assert set(flat["tokens"]["forward"]) == {"forget", "template"} and flat["tokens"]["backward"] == flat["tokens"]["forward"]
    assert flat["wall_seconds"] >= flat["train_seconds"] > 0


def forgetting_reading_alone(world, key: str) -> None:
    """The benchmark's forgetting axis read alone equals ``key`` of its reading along training."""
    run = world.settings.run("ga")
    model = experiment.start_model(world.models["target"], run)
    along = world.benchmark.evaluate_along(world, model, run, experiment.reference_statistic(world))
    assert world.benchmark.read_forget(world, model, run) == along[key]
