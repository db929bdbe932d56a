"""The classifier grid: its targets, its summaries (median, worst, share), and one real cell."""

import math

import pytest

from pyro_unlearn.bench import classifiers as grid
from pyro_unlearn.datasets import digits


def _row(**gaps):
    row = {"forget_acc": 0.0, "forget_gap": 0.0, "retain_gap": 0.0, "test_gap": 0.0}
    return {**row, "mia_gap": 0.0, "speedup": 20.0, **gaps}


@pytest.mark.parametrize(
    "change, meets",
    [
        ({}, True),
        ({"forget_acc": 0.03}, False),
        ({"retain_gap": -0.021}, False),
        ({"retain_gap": 0.019}, True),
        ({"test_gap": 0.03}, False),
        ({"mia_gap": -0.051}, False),
        ({"speedup": 9.9}, False),
    ],
)
def test_class_targets(change, meets):
    assert grid.meets_targets("class", _row(**change)) is meets


def test_example_targets_ignore_speed_and_the_attack():
    assert grid.meets_targets("random10", _row(speedup=0.5, mia_gap=0.3))
    assert not grid.meets_targets("random10", _row(forget_gap=-0.03))
    assert not grid.meets_targets("sequence", {"diverged": True})


def test_summary_takes_the_median_the_worst_and_the_share():
    cells = []
    for k, gap in enumerate([-0.01, 0.0, -0.05]):
        row = {**_row(retain_gap=gap), "meets_targets": gap > -0.02}
        cells.append(
            {"architecture": "mlp", "scenario": "class", "seed": 0, "class": k, "rows": {"m": row}}
        )
    entry = grid.summarise(cells)["class / mlp"]["m"]
    assert entry["retain_gap"] == {"median": -0.01, "worst": -0.05}
    assert math.isclose(entry["share_meeting_targets"], 2 / 3)
    assert entry["worst_retain_cell"] == "mlp class 2 seed 0"


def test_one_cell_against_its_own_retraining(float32):
    data = digits(seed=0)
    make, epochs = grid.ARCHITECTURES["mlp"]
    net = grid.unn.retrain(make, data["x_train"], data["y_train"], epochs=epochs, seed=0)
    cell = grid.run_cell(net, data, "mlp", "class", 0, 4, methods=("original", grid.NOISE_FLOOR))
    rows = cell["rows"]
    assert set(rows) == {"retrain", "original", grid.NOISE_FLOOR}
    assert rows["retrain"]["forget_acc"] == 0.0  # a network that never saw the class
    assert rows["original"]["forget_acc"] > 0.9 and not rows["original"]["meets_targets"]
    assert rows["original"]["forget_gap"] == rows["original"]["forget_acc"]
    assert cell["forgotten"] == int((data["y_train"] == 4).sum())
    # the noise floor: a second network retrained from another seed, another network than the
    # reference, judged on everything but speed (retraining is never 10x faster than itself)
    floor = rows[grid.NOISE_FLOOR]
    assert floor["forget_acc"] == 0.0 and floor["speedup"] < grid.SPEEDUP_TARGET
    assert floor["js_to_retrain"] > 0.0
    assert floor["meets_targets"] and abs(floor["retain_gap"]) <= 0.02


def test_run_keeps_the_scenarios_asked_for():
    results = grid.run(quick=True, methods=("original",), scenarios=("instances",))
    assert [c["scenario"] for c in results["cells"]] == ["instances"]
    assert set(results["cells"][0]["rows"]) == {"retrain", "original"}
    assert results["cells"][0]["forgotten"] == 5
