"""Locating where a run first reaches a forgetting level, to within two steps, from the weights kept along the run."""

import pytest
import torch

from sga.crossing import RESOLUTION, Crossing


class Path:
    """A one-parameter "model" whose forgetting reading is its weight; ``walk(step)`` sets the weight of a step."""

    def __init__(self, values):
        self.model = torch.nn.Linear(1, 1, bias=False)
        self.values, self.reads = values, []

    def walk(self, crossing, steps):
        for step in range(1, steps + 1):
            with torch.no_grad():
                self.model.weight.fill_(self.values(step))
            if crossing.on_step_end(step):
                return step
        return steps

    def read(self):
        self.reads.append(float(self.model.weight))
        return float(self.model.weight)


def search(path, level=0.5, start=1.0, every=25, stop_after=None):
    return Crossing(path.model, level, start, every, stop_after, path.read, lambda: {"forget": path.read(), "utility": 7.0})


@pytest.mark.parametrize("first_below", [1, 2, 13, 24, 25, 26, 37, 50, 99])
def test_the_crossing_is_located_to_within_two_steps(first_below):
    path = Path(lambda step: 1.0 - 0.9 * (step >= first_below))  # above the level until first_below, then below
    crossing = search(path)
    path.walk(crossing, 100)
    assert crossing.step is not None and crossing.step - crossing.resolution < first_below <= crossing.step
    assert crossing.resolution <= RESOLUTION and crossing.at_crossing == {"forget": pytest.approx(0.1), "utility": 7.0}
    checks = [s for s, _ in crossing.readings if s % 25 == 0]
    assert checks == [s for s in (25, 50, 75, 100) if s <= -(-first_below // 25) * 25]  # no reading after the crossing
    assert len(crossing.readings) <= len(checks) + 4  # bisection: log2(25 / 2) readings at most
    assert float(path.model.weight) == pytest.approx(0.1)  # the current weights are back after reading kept ones


def test_a_run_that_never_reaches_the_level_has_no_crossing_and_runs_its_budget():
    path = Path(lambda step: 1.0 - 0.004 * step)  # 0.6 after 100 steps: never at 0.5
    crossing = search(path)
    assert path.walk(crossing, 100) == 100 and crossing.step is None
    assert crossing.record()["readings"] == [[25, pytest.approx(0.9)], [50, pytest.approx(0.8)], [75, pytest.approx(0.7)], [100, pytest.approx(0.6)]]


def test_the_run_stops_a_stated_number_of_steps_after_the_crossing():
    path = Path(lambda step: 1.0 - 0.01 * step)  # 0.5 at step 50
    crossing = search(path, every=10, stop_after=7)
    assert path.walk(crossing, 100) == 57 and crossing.step == 50 and crossing.resolution <= RESOLUTION


def test_a_model_already_below_the_level_crosses_at_step_zero():
    path = Path(lambda step: 0.2)
    crossing = search(path, start=0.3)
    assert (crossing.step, crossing.resolution) == (0, 0) and path.walk(crossing, 30) == 30
    assert crossing.readings == []  # nothing more is read


def test_runs_are_also_read_at_given_steps_and_go_on_to_the_last():
    path = Path(lambda step: 1.0 - 0.01 * step)  # 0.5 at step 50
    crossing = Crossing(path.model, 0.5, 1.0, 10, 2, path.read, lambda: {"forget": path.read()}, read_at=(30, 80))
    assert path.walk(crossing, 100) == 80 and crossing.step == 50  # not at 52: it goes on to the step read last
    assert crossing.record()["at_steps"] == {"30": {"forget": pytest.approx(0.7)}, "80": {"forget": pytest.approx(0.2)}}


def test_a_crossing_at_a_read_at_step_is_read_in_full_once():
    path = Path(lambda step: 1.0 - 0.01 * step)  # 0.5 at step 50, found by the check at step 60
    full = []
    crossing = Crossing(path.model, 0.5, 1.0, 20, None, path.read, lambda: full.append(float(path.model.weight)) or {"n": len(full)},
                        read_at=(50,))
    path.walk(crossing, 60)
    assert crossing.step == 50 and full == [pytest.approx(0.5)]  # read at step 50 while training; the crossing reuses it
    assert crossing.at_crossing is crossing.at_steps[50]


def test_the_end_reading_reuses_a_reading_made_at_the_last_step():
    path = Path(lambda step: 1.0 - 0.01 * step)
    crossing = search(path, every=10)
    path.walk(crossing, 50)  # the check at step 50 finds the crossing there
    reads = len(path.reads)
    assert crossing.forgetting_at_end(50) == pytest.approx(0.5) and len(path.reads) == reads  # that check, not read again
    assert crossing.forgetting_at_end(51) == pytest.approx(0.5) and len(path.reads) == reads + 1  # no reading at 51: read
