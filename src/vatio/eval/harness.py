"""The evaluation harness: homes with injected labelled anomalies, a household split, thresholds, scores.

Protocol (what makes the numbers honest):

1. Homes: ``sim_homes`` simulated households (climates alternate, seeds from
   ``seed``) and, with ``data_dir``, the real homes of the shared data (the
   six SGSC homes half-hourly, the UCI house hourly), each cut to
   ``real_days`` when set.
2. Anomalies: ``per_kind`` of every kind in ``kinds`` per home,
   non-overlapping, seeded. None starts in a home's first ``clean_days``:
   every detector gets a clean history to learn from, as a newly installed
   meter would.
3. Split BY HOUSEHOLD, seeded: within each source (simulated, SGSC, UCI) a
   shuffled ``selection_fraction`` of the homes (rounded down, at least one
   when a source has two or more) forms the threshold-selection split; the
   rest are the held-out test split. A source with one home goes to test.
4. Threshold, ONE per detector, from the selection split only: among
   candidate values (quantiles of the selection scores), the one with the
   best event F1 whose false-alarm rate is at most
   ``max_false_alarms_per_household_month``; ties go to the higher value
   (fewer alerts). If no candidate meets the budget the detector never
   alerts (threshold +inf) rather than break it.
5. Test: that threshold on the test split, metrics per anomaly kind.
6. Known faults: holes already in a real recording (readings the meter never
   sent) are facts, not opinions. An alert episode starting on one that matches no
   label is counted neither as a hit nor as a false alarm; no label is made
   of it, so recall is unchanged (see :func:`recorded_gaps`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from vatio.detect.base import DeviceSeries, FloatArray, IntArray, SeriesDetector
from vatio.detect.forecast import ForecastResidualDetector
from vatio.detect.shapes import ShapeDetector
from vatio.detect.suite import VatioDetector
from vatio.detect.temperature import TemperatureDetector
from vatio.eval.baselines import HourOfWeekMAD, PyODBaseline, RiverHalfSpaceTrees, StaticThreshold
from vatio.eval.metrics import (
    HouseholdOutcome,
    KindMetrics,
    LabelSpan,
    MatchConfig,
    label_spans,
    match_household,
    row_kinds,
    summarise,
    summarise_kind,
)
from vatio.model.anomaly import AnomalyKind, AnomalyLabel
from vatio.sim.datasets import load
from vatio.sim.household import HouseholdParams, simulate_household
from vatio.sim.inject import MeterTrace, inject

#: Detectors by name. Vatio's own detectors are added here next to the baselines.
DETECTORS: dict[str, Callable[[], SeriesDetector]] = {
    "vatio": VatioDetector,
    "static_threshold": StaticThreshold,
    "hour_of_week_mad": HourOfWeekMAD,
    "river_hst": RiverHalfSpaceTrees,
    "pyod_iforest": lambda: PyODBaseline(model="iforest"),
    "forecast": ForecastResidualDetector,
    "shapes": ShapeDetector,
    "hvac_temperature": TemperatureDetector,
}

#: Real data sets of ../shared/data: (source name, file, loader format).
REAL_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("sgsc", "sgsc_households_halfhourly.csv.gz", "sgsc"),
    ("uci", "uci_household_hourly_2006_2010.csv.gz", "uci-hourly"),
)
CLIMATES = ("temperate_north", "subtropical_south")
SELECTION, TEST = "selection", "test"


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalConfig:
    """Everything a run depends on; same config, same numbers."""

    name: str = "custom"
    seed: int = 0
    sim_homes: int = 8
    sim_days: int = 182
    sim_step_s: int = 1800
    sim_start: datetime = datetime(2025, 1, 6, tzinfo=UTC)
    data_dir: Path | None = None
    real_days: int | None = None
    kinds: tuple[AnomalyKind, ...] = tuple(AnomalyKind)
    per_kind: int = 1
    clean_days: int = 14
    selection_fraction: float = 0.5
    max_false_alarms_per_household_month: float = 1.0
    match: MatchConfig = field(default_factory=MatchConfig)
    detectors: tuple[str, ...] = ()  # empty: every registered detector
    progress: bool = True


PRESETS: dict[str, EvalConfig] = {
    # CI: under two minutes on two cores with every baseline.
    "small": EvalConfig(name="small", sim_homes=8, sim_days=91, real_days=91),
    "full": EvalConfig(name="full", sim_homes=24, sim_days=365, per_kind=2),
}


@dataclass(slots=True)
class Household:
    """One evaluated home: its series as exported (anomalies injected) and its labels."""

    household_id: str
    source: str
    series: DeviceSeries
    labels: list[AnomalyLabel]
    spans: list[LabelSpan]
    split: str = TEST
    #: Faults already in the recording before injection (readings never sent): see the metrics notes.
    known: list[LabelSpan] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DetectorResult:
    name: str
    threshold: float
    selection: dict[str, KindMetrics]  # at the chosen threshold
    test: dict[str, KindMetrics]
    scoring_s: float


@dataclass(slots=True)
class EvalResult:
    config: EvalConfig
    households: list[Household]
    detectors: dict[str, DetectorResult]
    scores: dict[str, dict[str, FloatArray]]  # detector -> household id -> per-row score
    elapsed_s: float


def _inject_after(trace: MeterTrace, config: EvalConfig, seed: int) -> tuple[MeterTrace, list[AnomalyLabel]]:
    """Inject into the part of ``trace`` after its clean start; the counter runs on across the join."""
    clean_rows = min(len(trace) // 2, config.clean_days * 86400 // trace.step_s)
    head, tail = trace.slice_rows(0, clean_rows), trace.slice_rows(clean_rows, len(trace))
    tail, labels = inject(tail, config.kinds, seed=seed, per_kind=config.per_kind, avoid_overlap=True)
    joined = MeterTrace(
        trace.device_id,
        np.concatenate([head.ts, tail.ts]),
        np.concatenate([head.power_w, tail.power_w]),
        np.concatenate([head.energy_wh, tail.energy_wh]),
        np.concatenate([head.voltage_v, tail.voltage_v]),
        trace.step_s,
        None
        if head.temperature_c is None or tail.temperature_c is None
        else np.concatenate([head.temperature_c, tail.temperature_c]),
        trace.tz,
    )
    return joined, labels


def simulated_traces(config: EvalConfig) -> list[tuple[str, MeterTrace]]:
    traces = []
    end = config.sim_start + timedelta(days=config.sim_days)
    for i in range(config.sim_homes):
        climate = CLIMATES[i % len(CLIMATES)]
        home_seed = config.seed * 1_000 + i
        params = HouseholdParams.draw(home_seed, climate=climate)
        home = simulate_household(params, start=config.sim_start, end=end, step_s=config.sim_step_s)
        trace = MeterTrace.from_intervals(
            f"sim-{i:02d}",
            home.ts,
            config.sim_step_s,
            power_w=home.power_w,
            temperature_c=home.temperature_c,
            tz=params.tz,
        )
        traces.append(("sim", trace))
    return traces


def real_traces(config: EvalConfig) -> list[tuple[str, MeterTrace]]:
    if config.data_dir is None:
        return []
    traces = []
    for source, filename, fmt in REAL_SOURCES:
        for trace in load(config.data_dir / filename, fmt):
            if config.real_days is not None:
                trace = trace.slice_rows(0, config.real_days * 86400 // trace.step_s)
            traces.append((source, trace))
    return traces


def recorded_gaps(ts: IntArray, step_s: int) -> list[LabelSpan]:
    """Holes in a recording as known faults: the missing intervals and the first row after them.

    Real meters miss readings (SGSC homes have holes of 2-16 h, the UCI home
    of hours); a gap detector that reports one is right, although no label
    says so. The span ends after the row that reveals the hole, where
    :func:`vatio.detect.quality.gaps` alerts.

    >>> recorded_gaps(np.array([0, 1, 4, 5]) * 1800, 1800)
    [LabelSpan(kind='recorded_gap', start=3600, end=9000)]
    """
    missing = np.flatnonzero(np.diff(ts) > step_s)
    return [LabelSpan("recorded_gap", int(ts[i]) + step_s, int(ts[i + 1]) + step_s) for i in missing]


def build_households(config: EvalConfig) -> list[Household]:
    """Every home of the run, anomalies injected, split assigned."""
    households = []
    for index, (source, trace) in enumerate(simulated_traces(config) + real_traces(config)):
        injected, labels = _inject_after(trace, config, seed=config.seed * 10_007 + index)
        households.append(
            Household(
                trace.device_id,
                source,
                injected.to_series(),
                labels,
                label_spans(labels),
                known=recorded_gaps(trace.to_series().ts, trace.step_s),
            )
        )
    assign_splits(households, config)
    return households


def assign_splits(households: Sequence[Household], config: EvalConfig) -> None:
    """Seeded split by household, stratified by source (see the module notes)."""
    rng = np.random.default_rng(config.seed)
    for source in sorted({h.source for h in households}):
        members = sorted((h for h in households if h.source == source), key=lambda h: h.household_id)
        n_selection = math.floor(len(members) * config.selection_fraction)
        if len(members) >= 2:
            n_selection = min(max(n_selection, 1), len(members) - 1)
        for rank, position in enumerate(rng.permutation(len(members))):
            members[position].split = SELECTION if rank < n_selection else TEST
    if not any(h.split == SELECTION for h in households) or not any(h.split == TEST for h in households):
        raise ValueError("the evaluation needs at least two homes of one source: one to select, one to test")


def detector_names(config: EvalConfig) -> list[str]:
    names = list(config.detectors) or list(DETECTORS)
    unknown = [name for name in names if name not in DETECTORS]
    if unknown:
        raise ValueError(f"unknown detector(s) {', '.join(unknown)}; known: {', '.join(DETECTORS)}")
    return names


def outcomes_at(
    households: Sequence[Household], scores: dict[str, FloatArray], threshold: float, config: EvalConfig
) -> list[HouseholdOutcome]:
    return [
        match_household(
            h.series.ts,
            np.nan_to_num(scores[h.household_id], nan=-np.inf) >= threshold,
            h.spans,
            step_s=h.series.step_s,
            config=config.match,
            known=h.known,
        )
        for h in households
    ]


def candidate_thresholds(pooled: FloatArray) -> FloatArray:
    """Quantiles of the pooled scores, dense towards the top where event thresholds live."""
    finite = pooled[np.isfinite(pooled)]
    if finite.size == 0:
        return np.array([np.inf])
    levels = 1.0 - np.geomspace(0.5, 1e-5, 64)
    return np.unique(np.append(np.quantile(finite, levels), finite.max()))


def choose_threshold(households: Sequence[Household], scores: dict[str, FloatArray], config: EvalConfig) -> float:
    """The rule of the module notes, on the households given (the selection split)."""
    pooled = np.concatenate([scores[h.household_id] for h in households])
    best, best_f1 = math.inf, -1.0
    for value in candidate_thresholds(pooled)[::-1]:  # high to low: ties keep the higher
        overall = summarise_kind(outcomes_at(households, scores, float(value), config))
        if overall.false_alarms_per_household_month > config.max_false_alarms_per_household_month:
            continue
        f1 = 0.0 if math.isnan(overall.f1) else overall.f1
        if f1 > best_f1:
            best, best_f1 = float(value), f1
    return best if best_f1 > 0 else math.inf


def measure(
    households: Sequence[Household], scores: dict[str, FloatArray], threshold: float, config: EvalConfig
) -> dict[str, KindMetrics]:
    outcomes = outcomes_at(households, scores, threshold, config)
    pooled_scores = np.concatenate([scores[h.household_id] for h in households])
    pooled_kinds = np.concatenate([row_kinds(h.series.ts, h.spans) for h in households])
    return summarise(outcomes, scores=pooled_scores, kinds=pooled_kinds)


def run_eval(config: EvalConfig) -> EvalResult:
    """Build the homes, score them with every detector, select thresholds, measure on the test split."""
    began = time.perf_counter()
    names = detector_names(config)
    with Progress(disable=not config.progress, transient=True) as progress:
        build = progress.add_task("building homes", total=None)
        households = build_households(config)
        progress.update(build, total=1, completed=1)
        task = progress.add_task("scoring", total=len(names) * len(households))
        all_scores: dict[str, dict[str, FloatArray]] = {}
        results: dict[str, DetectorResult] = {}
        for name in names:
            started = time.perf_counter()
            scores: dict[str, FloatArray] = {}
            for household in households:
                progress.update(task, description=f"{name} · {household.household_id}")
                scores[household.household_id] = np.asarray(
                    DETECTORS[name]().score_series(household.series).score, dtype=np.float64
                )
                progress.advance(task)
            scoring_s = time.perf_counter() - started
            selection = [h for h in households if h.split == SELECTION]
            test = [h for h in households if h.split == TEST]
            threshold = choose_threshold(selection, scores, config)
            results[name] = DetectorResult(
                name=name,
                threshold=threshold,
                selection=measure(selection, scores, threshold, config),
                test=measure(test, scores, threshold, config),
                scoring_s=scoring_s,
            )
            all_scores[name] = scores
    return EvalResult(config, households, results, all_scores, time.perf_counter() - began)


def preset(name: str, **overrides: Any) -> EvalConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown config {name!r}; known: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)
