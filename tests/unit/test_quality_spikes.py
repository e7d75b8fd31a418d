"""The spike rule: a short value far above everything seen before, and not a new load's every run."""

from __future__ import annotations

import numpy as np

from vatio.detect.base import DeviceSeries
from vatio.detect.quality import spikes

MINUTE = 60
DAY = 86_400


def _water_heater(days: int = 7) -> DeviceSeries:
    """A one-minute sub-meter: off for its first day but one partial minute, then a 2 kW run every 6 h."""
    ts = np.arange(0, days * DAY, MINUTE, dtype=np.int64)
    power = np.zeros(len(ts))
    power[300] = 23.0  # a run that began just before the minute ended
    for start in range(DAY // MINUTE + 120, len(ts) - 30, 6 * 60):
        power[start : start + 25] = 2000.0
    return DeviceSeries("home-1-water-heater", ts, power, MINUTE)


def test_a_new_loads_runs_are_not_spikes_after_its_first_minutes() -> None:
    series = _water_heater()
    score = spikes(series)
    flagged = np.flatnonzero(score >= 1.0)
    first_run = DAY // MINUTE + 120
    # The first run is far above the quiet day's 23 W: only its first 5 minutes score, then it is a level.
    assert flagged.tolist() == list(range(first_run, first_run + 5))
    # ... and none of the 20-odd runs after it.
    assert series.power_w[first_run + 6 * 60] == 2000.0
    assert not np.any(score[first_run + 5 :] > 0.0)


def test_a_short_spike_still_scores_after_the_level_is_learned() -> None:
    series = _water_heater()
    at = 5 * DAY // MINUTE + 7
    assert series.power_w[at] == 0.0
    series.power_w[at : at + 2] = 30_000.0  # two minutes of an implausible 30 kW
    score = spikes(series)
    assert score[at] == score[at + 1] == 30_000.0 / (3 * 2000.0)
    assert score[at + 2] == 0.0


def test_nothing_scores_in_the_first_day_and_half_hourly_spikes_are_one_row() -> None:
    # The warm-up is a day, whatever the step: a kettle at minute 200 of a new plug's life is not a spike.
    minutes = np.arange(0, 2 * DAY, MINUTE, dtype=np.int64)
    kettle = np.full(len(minutes), 10.0)
    kettle[200:203] = 2000.0
    assert not np.any(spikes(DeviceSeries("plug", minutes, kettle, MINUTE)) > 0.0)
    ts = np.arange(0, 10 * DAY, 1800, dtype=np.int64)
    power = 300.0 + 200.0 * np.sin(np.arange(len(ts)) * 2 * np.pi / 48)
    power[10] = 5000.0  # in the warm-up day: it sets the bar, it does not score
    series = DeviceSeries("d", ts, power.copy(), 1800)
    assert not np.any(spikes(series) > 0.0)
    power[10] = 400.0
    power[100] = 9000.0  # one half-hour far above: a spike
    power[200:204] = 9000.0  # two hours far above: its first half-hour scores, then it is a level
    score = spikes(DeviceSeries("d", ts, power, 1800))
    assert np.flatnonzero(score).tolist() == [100, 200]
