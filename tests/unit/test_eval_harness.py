"""The evaluation harness end to end: tiny runs, the split discipline, reproducibility, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vatio.detect.base import DeviceSeries, SeriesScores
from vatio.eval import harness
from vatio.eval.harness import (
    DETECTORS,
    SELECTION,
    TEST,
    EvalConfig,
    build_households,
    choose_threshold,
    run_eval,
)
from vatio.eval.metrics import OVERALL, row_kinds
from vatio.eval.report import main, render_markdown, result_json
from vatio.model.anomaly import AnomalyKind

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BASELINES = ("static_threshold", "hour_of_week_mad", "river_hst", "pyod_iforest")
TINY = EvalConfig(
    name="tiny",
    seed=5,
    sim_homes=3,
    sim_days=35,
    kinds=(AnomalyKind.LEFT_ON, AnomalyKind.SPIKE),
    detectors=BASELINES,
    progress=False,
)


@pytest.fixture(scope="module")
def tiny_result() -> harness.EvalResult:
    return run_eval(TINY)


def test_tiny_run_scores_every_detector_on_every_home(tiny_result: harness.EvalResult) -> None:
    assert list(tiny_result.detectors) == list(BASELINES)
    splits = [h.split for h in tiny_result.households]
    assert sorted(splits) == [SELECTION, TEST, TEST]  # 3 homes: floor(1.5) select, the rest test
    for name, result in tiny_result.detectors.items():
        assert set(result.test) == {OVERALL, "left_on", "spike"}, name
        assert result.test[OVERALL].n_labels == 4  # two test homes, one label of each kind
        for household in tiny_result.households:
            assert len(tiny_result.scores[name][household.household_id]) == len(household.series)


def test_labels_avoid_the_clean_start(tiny_result: harness.EvalResult) -> None:
    for household in tiny_result.households:
        clean_until = household.series.ts[0] + TINY.clean_days * 86400
        assert all(span.start >= clean_until for span in household.spans)


def test_report_names_every_detector(tiny_result: harness.EvalResult) -> None:
    markdown = render_markdown(tiny_result, "vatio eval --config tiny", images={})
    assert markdown.splitlines()[2] == f"Made by `vatio eval --config tiny` in {tiny_result.elapsed_s:.0f} s."
    for name in BASELINES:
        assert f"| {name} |" in markdown


def test_same_seed_same_numbers(tiny_result: harness.EvalResult) -> None:
    again = run_eval(TINY)
    first, second = result_json(tiny_result, "x"), result_json(again, "x")
    for document in (first, second):
        document.pop("elapsed_s")
        for detector in document["detectors"].values():
            detector.pop("scoring_s")
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


class SplitAwareOracle:
    """Perfect on both splits, on different scales: the test split would pick another threshold.

    Selection homes score 10 inside labels and 0 elsewhere; test homes 1000
    inside and 20 elsewhere. A threshold chosen on the selection split is 10,
    which alerts on every test row; one peeking at the test split would be 1000.
    """

    name = "oracle"

    def __init__(self, config: EvalConfig) -> None:
        self.households = {h.household_id: h for h in build_households(config)}

    def score_series(self, series: DeviceSeries) -> SeriesScores:
        household = self.households[series.device_id]
        labelled = row_kinds(series.ts, household.spans) != ""
        inside, outside = (10.0, 0.0) if household.split == SELECTION else (1000.0, 20.0)
        scores = SeriesScores.empty(len(series), self.name)
        scores.score = np.where(labelled, inside, outside)
        return scores


def test_threshold_comes_from_the_selection_split_only(monkeypatch: pytest.MonkeyPatch) -> None:
    config = EvalConfig(
        name="oracle",
        seed=2,
        sim_homes=4,
        sim_days=28,
        kinds=(AnomalyKind.LEFT_ON,),
        detectors=("oracle",),
        progress=False,
    )
    monkeypatch.setitem(DETECTORS, "oracle", lambda: SplitAwareOracle(config))
    result = run_eval(config)
    oracle = result.detectors["oracle"]
    test_homes = [h for h in result.households if h.split == TEST]
    assert choose_threshold(test_homes, result.scores["oracle"], config) == 1000.0  # what peeking would give
    assert oracle.threshold == 10.0
    assert oracle.selection[OVERALL].f1 == 1.0
    # Alerting on every test row: day-long pieces of one episode, most of them false alarms.
    assert oracle.test[OVERALL].recall == 1.0
    assert oracle.test[OVERALL].false_alarms_per_household_month > 10


def test_unknown_detector_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        run_eval(EvalConfig(detectors=("nope",), sim_homes=2, sim_days=21, progress=False))


def test_main_refuses_unknown_detector(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--detectors", "nope", "--out", str(tmp_path), "--no-data"]) == 2
    assert "unknown detector" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_small_config_writes_report_json_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} absent")
    out = tmp_path / "eval"
    argv = ["--config", "small", "--out", str(out), "--json", "--data", str(DATA)]
    assert main(argv) == 0
    report = (out / "report.md").read_text()
    assert report.splitlines()[2].startswith(f"Made by `vatio eval {' '.join(argv)}`")
    document = json.loads(capsys.readouterr().out)
    assert document == json.loads((out / "report.json").read_text())
    assert {h["source"] for h in document["households"]} == {"sim", "sgsc", "uci"}
    kinds = {str(kind) for kind in AnomalyKind}
    for name in BASELINES:
        test = document["detectors"][name]["test"]
        assert set(test) == {OVERALL, *kinds}
        assert {"recall", "precision", "f1", "delay_median_s", "pr_auc"} <= set(test["left_on"])
        assert f"| {name} |" in report
    for kind in kinds:
        assert (out / "img" / f"{kind}.png").stat().st_size > 0


def test_known_faults_are_the_recordings_own_holes_not_injected_gaps() -> None:
    config = EvalConfig(
        name="gaps", seed=1, sim_homes=2, sim_days=35, data_dir=DATA,
        kinds=(AnomalyKind.GAP,), detectors=("static_threshold",), progress=False,
    )  # fmt: skip
    homes = build_households(config)
    sim = [h for h in homes if h.source == "sim"]
    real = [h for h in homes if h.source != "sim"]
    assert sim
    assert real
    # Simulated meters never miss a reading: only the injected gaps are holes, and they are labels.
    assert all(h.known == [] for h in sim)
    assert all(any(span.kind == "gap" for span in h.spans) for h in sim)
    # The real recordings have holes of their own, found before injection, all outside the injected gaps.
    assert sum(len(h.known) for h in real) > 0
    for home in real:
        for fault in home.known:
            assert fault.kind == "recorded_gap"
            row = np.searchsorted(home.series.ts, fault.end - home.series.step_s)
            assert home.series.ts[row] == fault.end - home.series.step_s  # the row revealing the hole
            assert home.series.ts[row - 1] + home.series.step_s <= fault.start
            assert not any(s.start < fault.end and s.end > fault.start for s in home.spans if s.kind == "gap")
