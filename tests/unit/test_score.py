"""`vatio score`: the CSV contract, causality, explanations and bad input."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vatio.cli import main
from vatio.detect.base import DeviceSeries, Threshold
from vatio.detect.explain import explain
from vatio.detect.suite import VatioDetector
from vatio.score import DEFAULT_THRESHOLD, read_input, score_frame

STEP = 1800
WEEKS = 5


def _daily(ts: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hour = (ts % 86400) / 3600
    return 250 + 350 * np.exp(-((hour - 19) ** 2) / 6) + rng.normal(0, 15, len(ts))


def _csv(path: Path, *, left_on_w: float = 0.0, devices: int = 2) -> pd.DataFrame:
    ts = np.arange(1_767_225_600, 1_767_225_600 + WEEKS * 7 * 86400, STEP, dtype=np.int64)
    frames = []
    for d in range(devices):
        power = _daily(ts, seed=d)
        if d == 0:
            power[-30:] += left_on_w
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": pd.to_datetime(ts, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "device_id": f"m{d}",
                    "power_w": power.round(1),
                }
            )
        )
    frame = pd.concat(frames).sort_values("timestamp", kind="stable").reset_index(drop=True)
    frame.to_csv(path, index=False)
    return frame


def test_one_output_row_per_input_row_in_input_order(tmp_path: Path) -> None:
    source = _csv(tmp_path / "in.csv", left_on_w=1500)
    assert main(["score", str(tmp_path / "in.csv"), "--out", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(out.columns) == ["timestamp", "device_id", "score", "anomaly", "kind", "explanation"]
    assert len(out) == len(source)
    assert (out["timestamp"] == source["timestamp"]).all()
    assert (out["device_id"] == source["device_id"]).all()
    flagged = out[out["anomaly"] == 1]
    assert set(flagged["device_id"]) == {"m0"}, "only the device with the appliance left on is flagged"
    assert (flagged["kind"] != "").all()
    assert (out.loc[out["anomaly"] == 0, "explanation"] == "").all()


def test_the_left_on_appliance_is_explained_with_band_and_observed_value(tmp_path: Path) -> None:
    _csv(tmp_path / "in.csv", left_on_w=1500, devices=1)
    main(["score", str(tmp_path / "in.csv"), "--out", str(tmp_path / "out.csv")])
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    last = out.iloc[-1]
    assert last["anomaly"] == 1
    text = last["explanation"]
    assert "observed" in text
    assert "expected" in text
    assert "band" in text
    observed = float(text.split("observed ")[1].split(" W")[0])
    expected = float(text.split("expected ")[1].split(" W")[0])
    assert observed - expected > 500, text


def test_scoring_is_causal(tmp_path: Path) -> None:
    """Changing rows after row k leaves the scores of rows up to k unchanged."""
    frame = read_input(_as_csv(tmp_path, _csv(tmp_path / "a.csv", devices=1)))
    k = len(frame) - 100
    changed = frame.copy()
    changed.loc[k + 1 :, "power_w"] = changed.loc[k + 1 :, "power_w"] * 5 + 1000
    kwargs = {"detector": VatioDetector(), "threshold": Threshold(1.0)}
    before = score_frame(frame, **kwargs)  # type: ignore[arg-type]
    after = score_frame(changed, **kwargs)  # type: ignore[arg-type]
    assert (before["score"][: k + 1] == after["score"][: k + 1]).all()
    assert (before["score"][k + 1 :] != after["score"][k + 1 :]).any()


def _as_csv(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "again.csv"
    frame.to_csv(path, index=False)
    return path


def test_interval_ending_stamps_are_shifted_back(tmp_path: Path) -> None:
    frame = _csv(tmp_path / "in.csv", devices=1)
    frame = frame.rename(columns={"power_w": "energy_kwh"})
    frame["energy_kwh"] = frame["energy_kwh"] / 2000
    path = _as_csv(tmp_path, frame)
    start_ending = read_input(path)
    from vatio.score import device_series

    plain = device_series("m0", start_ending, interval_ending=False)
    ending = device_series("m0", start_ending, interval_ending=True)
    assert (plain.ts - ending.ts == STEP).all()
    assert np.allclose(plain.power_w, frame["energy_kwh"] * 1000 * 3600 / STEP)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,device_id,power_w\n2026-01-01T00:00:00Z,d,1\n", "missing column(s) timestamp"),
        ("timestamp,device_id\n2026-01-01T00:00:00Z,d\n", "power_w or an energy_kwh"),
        ("timestamp,device_id,power_w\nyesterday,d,1\n", "row 2: timestamp 'yesterday' is not ISO 8601"),
        (
            "timestamp,device_id,power_w\n2026-01-01T00:00:00Z,d,1\n2026-01-01T00:30:00Z,d,lots\n",
            "row 3: power_w",
        ),
        ("timestamp,device_id,power_w\n2026-01-01T00:00:00Z,,1\n", "device_id is empty"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["score", str(path), "--out", str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out.csv").exists()


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def _series(n_weeks: int = 5, seed: int = 0) -> DeviceSeries:
    ts = np.arange(0, n_weeks * 7 * 86400, STEP, dtype=np.int64)
    return DeviceSeries("d", ts, _daily(ts, seed), STEP)


def test_detector_is_deterministic_and_pickles() -> None:
    detector = VatioDetector()
    clone = pickle.loads(pickle.dumps(detector))
    a = detector.score_series(_series())
    b = clone.score_series(_series())
    assert np.array_equal(a.score, b.score)
    assert list(a.kind) == list(b.kind)


def test_no_alerts_from_an_empty_baseline() -> None:
    full = _series(n_weeks=1)
    keep = full.ts < 4 * 86400  # four days: less history than any baseline needs
    series = DeviceSeries("d", full.ts[keep], full.power_w[keep], STEP)
    series.power_w[60:] += 2000  # a huge step on day two
    scores = VatioDetector().score_series(series)
    assert set(scores.kind[scores.score >= 1.0]) <= {"spike"}


@pytest.mark.parametrize(
    ("corrupt", "kind"),
    [
        ("stuck", "stuck_meter"),
        ("gap", "gap"),
        ("reset", "counter_reset"),
        ("baseload", "floor_record"),
        ("vacancy", "level_low"),
    ],
)
def test_each_component_names_its_kind(corrupt: str, kind: str) -> None:
    series = _series()
    n = len(series)
    energy = series.power_w * STEP / 3600
    if corrupt == "stuck":
        series.power_w[n - 20 :] = series.power_w[n - 20]
    elif corrupt == "gap":
        keep = np.ones(n, dtype=bool)
        keep[n - 20 : n - 5] = False
        series = DeviceSeries("d", series.ts[keep], series.power_w[keep], STEP)
    elif corrupt == "reset":
        energy[n - 3] = -5e6
    elif corrupt == "baseload":
        series.power_w[n - 96 :] += 300
    elif corrupt == "vacancy":
        series.power_w[n - 96 :] = 20.0 + np.random.default_rng(3).uniform(0, 5, 96)
    if corrupt == "reset":
        series = DeviceSeries("d", series.ts, series.power_w, STEP, energy_wh=energy)
    scores = VatioDetector().score_series(series)
    flagged = scores.score >= 1.0
    assert kind in set(scores.kind[flagged]), set(scores.kind[flagged])
    row = int(np.flatnonzero(flagged & (scores.kind == kind))[-1])
    assert kind in explain(scores, row)


def test_each_home_is_measured_against_its_own_tail() -> None:
    """A home whose ordinary life always looks extreme is not scored as extreme all the time."""
    ts = np.arange(0, 6 * 7 * 86400, STEP, dtype=np.int64)
    rng = np.random.default_rng(5)
    # A quiet baseload with 1-3 kW bursts at random times, one interval in twenty: normal for this home.
    bursts = np.where(rng.random(len(ts)) < 0.05, rng.uniform(1000, 3000, len(ts)), 0.0)
    power = 200 + rng.normal(0, 5, len(ts)) + bursts
    series = DeviceSeries("d", ts, power, STEP)
    last_weeks = ts >= 4 * 7 * 86400
    hourly = ("level_high", "sustained_high", "baseload_increase")
    calibrated = VatioDetector(kinds=hourly).score_series(series).score[last_weeks]
    absolute = VatioDetector(kinds=hourly, calibrate_q=None).score_series(series).score[last_weeks]
    # Uncalibrated, this home's ordinary bursts would pass 3 (a calibrated 1-in-1000) every few
    # days; calibrated, hardly ever.
    rare = 3.0
    assert np.mean(absolute >= rare) > 0.005
    assert np.mean(calibrated >= rare) < 0.2 * np.mean(absolute >= rare)
    # Nor do the default components (the records see one-interval bursts as nothing lasting).
    assert np.mean(VatioDetector().score_series(series).score[last_weeks] >= DEFAULT_THRESHOLD) < 0.002


def test_offsets_changing_at_a_dst_boundary_are_read_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "dst.csv"
    path.write_text(
        "timestamp,device_id,power_w\n"
        "2026-10-25T01:30:00+02:00,d,100\n2026-10-25T02:30:00+02:00,d,100\n"
        "2026-10-25T02:30:00+01:00,d,100\n2026-10-25T03:30:00+01:00,d,100\n"
    )
    frame = read_input(path)
    assert np.diff(frame["_ts"].to_numpy()).tolist() == [3600, 3600, 3600]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("2026-10-25T01:30:00Z,d,1\n2026-10-25T02:30:00,d,1\n", "row 3: timestamp '2026-10-25T02:30:00' has no UTC"),
        ("2026-10-25T01:30:00Z,d,1\n2026-10-25T02:30:00Z,d,inf\n", "row 3: power_w 'inf' is not a finite number"),
    ],
)
def test_mixed_naive_and_offset_stamps_and_infinities_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,device_id,power_w\n" + rows)
    assert main(["score", str(path), "--out", str(tmp_path / "out.csv")]) == 2
    assert message in capsys.readouterr().err


def test_later_rows_at_another_resolution_do_not_change_earlier_scores(tmp_path: Path) -> None:
    base = _csv(tmp_path / "a.csv", devices=1)
    frame = read_input(_as_csv(tmp_path, base))
    tail = frame.tail(300).copy()
    # The same device continues at 15-minute resolution after the half-hourly rows.
    tail["_ts"] = frame["_ts"].iloc[-1] + 900 * np.arange(1, 301)
    tail["timestamp"] = pd.to_datetime(tail["_ts"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    longer = pd.concat([frame, tail], ignore_index=True)
    kwargs = {"detector": VatioDetector(), "threshold": Threshold(1.0)}
    alone = score_frame(frame, **kwargs)  # type: ignore[arg-type]
    extended = score_frame(longer, **kwargs)  # type: ignore[arg-type]
    assert (alone["score"].to_numpy() == extended["score"].to_numpy()[: len(frame)]).all()
