"""The optimistic delay bound of `vatio eval bound`, on homes whose answer is known."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from vatio.cli import main as cli_main
from vatio.eval.delay_bound import SLOTS_PER_DAY, bound, budget_threshold, episodes, seen_within
from vatio.sim.inject import MeterTrace

DAYS = 90


def home(power_w: np.ndarray, name: str = "home") -> MeterTrace:
    return MeterTrace.from_intervals(name, np.arange(len(power_w)) * 1800, 1800, power_w=power_w)


def test_a_quiet_home_shows_every_step_within_two_hours() -> None:
    rng = np.random.default_rng(1)
    quiet = 150.0 + rng.normal(0.0, 3.0, DAYS * SLOTS_PER_DAY)
    [left_on, baseload] = bound([home(quiet)], draws=500).values()
    assert left_on["mean_share_within_2h"] == 1.0
    assert baseload["mean_share_within_2h"] == 1.0


def test_a_home_with_long_random_loads_hides_small_steps() -> None:
    # Every day a 1-4 kW load runs 1-6 h from a random slot: a 50-300 W step hides under it
    # until the budget lets the threshold down, but a 2 kW one mostly does not.
    rng = np.random.default_rng(2)
    power = 150.0 + rng.normal(0.0, 3.0, DAYS * SLOTS_PER_DAY)
    for day in range(DAYS):
        for _ in range(3):
            start = day * SLOTS_PER_DAY + int(rng.integers(0, SLOTS_PER_DAY))
            power[start : start + int(rng.integers(2, 13))] += rng.uniform(1000.0, 4000.0)
    result = bound([home(power)], draws=2000)
    left_on, baseload = result["left_on"], result["baseload_increase"]
    assert float(baseload["mean_share_within_2h"]) < 0.5  # type: ignore[arg-type]
    assert float(baseload["mean_share_within_2h"]) < float(left_on["mean_share_within_2h"])  # type: ignore[arg-type]


def test_the_budget_threshold_allows_at_most_the_budget() -> None:
    rng = np.random.default_rng(3)
    residual = rng.normal(0.0, 10.0, 60 * SLOTS_PER_DAY)
    threshold = budget_threshold(residual, per_month=1.0)
    assert episodes(residual > threshold) <= 2  # 60 days: two episodes allowed
    # Episodes merge as the harness merges alerts: rows up to 5 apart (2 h between half-hour rows).
    assert episodes(np.isin(np.arange(20), [0, 5, 11])) == 2
    # and it is the lowest such: a tenth lower lets more through
    assert episodes(residual > threshold - 0.1 * abs(threshold)) > 2
    assert budget_threshold(residual, per_month=10.0) < threshold


def test_a_step_is_seen_only_on_rows_whose_window_lies_after_its_onset() -> None:
    residual = np.zeros(20)
    residual[7] = 100.0  # a normal burst 7 rows after the onset: outside the 2 h rows
    onsets = np.array([0])
    assert not seen_within(residual, 50.0, 1, np.array([40.0]), onsets)[0]
    assert seen_within(residual, 50.0, 1, np.array([60.0]), onsets)[0]
    residual[4] = 20.0  # row 4 is 2 h in: a window of 5 slots ends there
    assert seen_within(residual, 50.0, 5, np.array([40.0]), onsets)[0]
    assert not seen_within(residual, 50.0, 5, np.array([25.0]), onsets)[0]


def test_too_short_a_recording_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = ["customer_id,reading_datetime,general_supply_kwh"]
    rows += [f"1,2012-02-{1 + k // 48:02d} {k % 48 // 2:02d}:{30 * (k % 2):02d}:00,0.1" for k in range(10 * 48)]
    with gzip.open(tmp_path / "sgsc_households_halfhourly.csv.gz", "wt") as out:
        out.write("\n".join(rows) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["eval", "bound", "--data", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no half-hourly home with more than 35 days" in capsys.readouterr().err


def test_missing_data_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["eval", "bound", "--data", "/nonexistent"])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err
