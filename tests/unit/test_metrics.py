"""Event-level metrics on hand-built cases whose answers are worked out in the comments."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from vatio.eval.metrics import (
    MONTH_S,
    OVERALL,
    LabelSpan,
    MatchConfig,
    alert_episodes,
    label_spans,
    match_household,
    pr_auc,
    row_kinds,
    summarise,
)
from vatio.model.anomaly import AnomalyKind, AnomalyLabel

H = 3600
CONFIG = MatchConfig(merge_gap_s=2 * H, grace_s=6 * H, max_episode_s=24 * H)
TS = np.arange(240, dtype=np.int64) * H  # ten days, hourly
SPANS = [
    LabelSpan("left_on", 10 * H, 20 * H),
    LabelSpan("spike", 50 * H, 51 * H),
    LabelSpan("vacancy", 100 * H, 150 * H),
]


def _episodes(
    alerts: np.ndarray, *, ts: np.ndarray = TS, merge_gap_s: int, max_episode_s: int
) -> list[tuple[int, int]]:
    starts, ends = alert_episodes(ts, alerts, step_s=H, merge_gap_s=merge_gap_s, max_episode_s=max_episode_s)
    return [(int(a) // H, int(b) // H) for a, b in zip(starts, ends, strict=True)]


def _alerts(rows: list[int]) -> np.ndarray:
    alerts = np.zeros(len(TS), dtype=bool)
    alerts[rows] = True
    return alerts


# Rows 12-13 hit left_on 2 h in; row 53 is 2 h after the spike ended (inside the
# 6 h grace), 3 h after its start; vacancy is missed. Rows 200, 201 and 204 are one
# false alarm (the 2 h of silence between 201's end and 204 is within the merge
# gap), row 230 a second one.
SCENARIO = _alerts([12, 13, 53, 200, 201, 204, 230])


def test_episodes_merge_gaps_up_to_the_merge_gap() -> None:
    episodes = _episodes(SCENARIO, merge_gap_s=2 * H, max_episode_s=24 * H)
    assert episodes == [(12, 14), (53, 54), (200, 205), (230, 231)]
    # One hour less of merge gap splits 200-201 from 204.
    tighter = _episodes(SCENARIO, merge_gap_s=H, max_episode_s=24 * H)
    assert tighter == [(12, 14), (53, 54), (200, 202), (204, 205), (230, 231)]


def test_missing_rows_count_as_time_not_as_adjacency() -> None:
    ts = np.array([0, 1, 2, 10, 11], dtype=np.int64) * H  # rows 3-9 absent
    alerts = np.ones(5, dtype=bool)
    assert _episodes(alerts, ts=ts, merge_gap_s=2 * H, max_episode_s=24 * H) == [(0, 3), (10, 12)]


def test_long_episode_is_cut_into_pieces() -> None:
    alerts = _alerts(list(range(50)))
    assert _episodes(alerts, merge_gap_s=0, max_episode_s=24 * H) == [(0, 24), (24, 48), (48, 50)]
    # Two long episodes are cut independently.
    alerts[60:90] = True
    assert _episodes(alerts, merge_gap_s=0, max_episode_s=24 * H)[3:] == [(60, 84), (84, 90)]


def test_no_alerts_no_episodes() -> None:
    assert _episodes(np.zeros(len(TS), dtype=bool), merge_gap_s=0, max_episode_s=H) == []


def test_scenario_per_label_outcome() -> None:
    outcome = match_household(TS, SCENARIO, SPANS, step_s=H, config=CONFIG)
    assert outcome.found.tolist() == [True, True, False]
    assert outcome.delay_s[:2].tolist() == [2 * H, 3 * H]
    assert math.isnan(outcome.delay_s[2])
    # Episodes x labels: the first two match one label each, the others none.
    assert outcome.overlap.tolist() == [
        [True, False, False],
        [False, True, False],
        [False, False, False],
        [False, False, False],
    ]
    assert outcome.months == pytest.approx(240 * H / MONTH_S)


def test_scenario_overall_numbers() -> None:
    outcome = match_household(TS, SCENARIO, SPANS, step_s=H, config=CONFIG)
    overall = summarise([outcome])[OVERALL]
    # 4 episodes, 2 matched; 2 of 3 labels found.
    assert (overall.n_episodes, overall.n_false_alarms, overall.n_labels, overall.n_found) == (4, 2, 3, 2)
    assert overall.precision == pytest.approx(0.5)
    assert overall.recall == pytest.approx(2 / 3)
    assert overall.f1 == pytest.approx(4 / 7)  # 2·(1/2)(2/3) / (1/2 + 2/3)
    assert overall.false_alarms_per_household_month == pytest.approx(2 / (240 * H / MONTH_S))
    # Delays 2 h and 3 h: median 2.5 h, p90 = 2 h + 0.9 h (linear interpolation).
    assert overall.delay_median_s == pytest.approx(2.5 * H)
    assert overall.delay_p90_s == pytest.approx(2.9 * H)


def test_scenario_per_kind_numbers() -> None:
    metrics = summarise([match_household(TS, SCENARIO, SPANS, step_s=H, config=CONFIG)])
    assert set(metrics) == {OVERALL, "left_on", "spike", "vacancy"}
    left_on = metrics["left_on"]
    # Precision against all false alarms: 1 matched / (1 + 2); F1 = 2·(1/3)·1/(4/3).
    assert (left_on.recall, left_on.precision, left_on.f1) == pytest.approx((1.0, 1 / 3, 0.5))
    assert left_on.delay_median_s == 2 * H
    vacancy = metrics["vacancy"]
    assert (vacancy.recall, vacancy.precision, vacancy.f1) == (0.0, 0.0, 0.0)
    assert math.isnan(vacancy.delay_median_s)


def test_alerting_everything_is_not_a_perfect_score() -> None:
    outcome = match_household(TS, np.ones(len(TS), dtype=bool), SPANS, step_s=H, config=CONFIG)
    overall = summarise([outcome])[OVERALL]
    # Ten day-long pieces. Day 0 overlaps left_on, day 1 starts 4 h after it ended
    # (within grace), day 2 holds the spike, days 4-6 the vacancy: 6 matched, 4 not.
    assert (overall.n_episodes, overall.n_false_alarms) == (10, 4)
    assert overall.precision == pytest.approx(0.6)
    assert overall.recall == 1.0
    assert overall.delay_median_s == 0.0


def test_episode_starting_after_the_grace_period_is_a_false_alarm() -> None:
    alerts = _alerts([57])  # the spike ended at 51 h; 51 h + 6 h grace is exclusive
    outcome = match_household(TS, alerts, SPANS[1:2], step_s=H, config=CONFIG)
    assert outcome.found.tolist() == [False]
    assert outcome.overlap.tolist() == [[False]]


def test_no_alerts_is_precision_one_recall_zero() -> None:
    outcome = match_household(TS, np.zeros(len(TS), dtype=bool), SPANS, step_s=H, config=CONFIG)
    overall = summarise([outcome])[OVERALL]
    assert (overall.precision, overall.recall, overall.f1) == (1.0, 0.0, 0.0)
    assert overall.false_alarms_per_household_month == 0.0


def test_households_pool_counts_and_months() -> None:
    first = match_household(TS, SCENARIO, SPANS, step_s=H, config=CONFIG)
    second_ts = np.arange(120, dtype=np.int64) * 2 * H  # ten days at 2-hourly steps
    second = match_household(second_ts, np.zeros(120, dtype=bool), [], step_s=2 * H, config=CONFIG)
    overall = summarise([first, second])[OVERALL]
    assert overall.false_alarms_per_household_month == pytest.approx(2 / (2 * 240 * H / MONTH_S))
    assert overall.n_labels == 3


def test_pr_auc_by_hand() -> None:
    # Ranked 0.9(+) 0.8(-) 0.3(+) 0.1(-): precision at each positive 1/1 and 2/3.
    score = np.array([0.9, 0.8, 0.3, 0.1])
    assert pr_auc(score, np.array([True, False, True, False])) == pytest.approx((1 + 2 / 3) / 2)
    # A row that could not be scored ranks last.
    assert pr_auc(np.array([np.nan, 0.5]), np.array([True, False])) == pytest.approx(0.5)
    assert math.isnan(pr_auc(score, np.zeros(4, dtype=bool)))


def test_per_kind_pr_auc_ignores_other_kinds_rows() -> None:
    ts = np.arange(4, dtype=np.int64) * H
    spans = [LabelSpan("spike", 0, H), LabelSpan("gap", H, 2 * H)]
    kinds = row_kinds(ts, spans)
    assert kinds.tolist() == ["spike", "gap", "", ""]
    score = np.array([0.5, 0.9, 0.1, 0.2])
    outcome = match_household(ts, np.zeros(4, dtype=bool), spans, step_s=H, config=CONFIG)
    metrics = summarise([outcome], scores=score, kinds=kinds)
    # Without the gap row, the spike row outranks both unlabelled rows.
    assert metrics["spike"].pr_auc == pytest.approx(1.0)
    assert metrics[OVERALL].pr_auc == pytest.approx(1.0)


def test_label_spans_use_epoch_seconds() -> None:
    label = AnomalyLabel(
        kind=AnomalyKind.SPIKE,
        device_id="home-1",
        start=datetime(2026, 1, 1, tzinfo=UTC),
        end=datetime(2026, 1, 1, 1, tzinfo=UTC),
        magnitude=5000.0,
    )
    assert label_spans([label]) == [LabelSpan("spike", 1767225600, 1767229200)]


def test_an_alert_on_a_known_fault_is_neither_hit_nor_false_alarm() -> None:
    # The recording itself misses hours 229-230 (known); the SCENARIO's alert at row 230
    # reports that hole. A known span over the left_on label changes nothing there, and the
    # false alarm of rows 200-204 began before the hole inside it: it is not excused.
    known = [
        LabelSpan("recorded_gap", 229 * H, 231 * H),
        LabelSpan("recorded_gap", 11 * H, 12 * H),
        LabelSpan("recorded_gap", 202 * H, 203 * H),
    ]
    outcome = match_household(TS, SCENARIO, SPANS, step_s=H, config=CONFIG, known=known)
    assert outcome.explained.tolist() == [False, False, False, True]
    overall = summarise([outcome])[OVERALL]
    # 2 matched, 1 false alarm (rows 200-204), 1 explained: precision 2/3, recall still 2/3.
    assert (overall.n_episodes, overall.n_false_alarms, overall.n_explained) == (3, 1, 1)
    assert overall.precision == pytest.approx(2 / 3)
    assert overall.recall == pytest.approx(2 / 3)
    assert overall.false_alarms_per_household_month == pytest.approx(1 / (240 * H / MONTH_S))
    # Without the known faults the same alerts hold two false alarms.
    assert summarise([match_household(TS, SCENARIO, SPANS, step_s=H, config=CONFIG)])[OVERALL].n_false_alarms == 2
