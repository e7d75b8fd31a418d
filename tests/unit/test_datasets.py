"""Loaders: the real files as the data README describes them, in UTC; the CSV contract and its errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from vatio.errors import ConfigError
from vatio.sim.datasets import UCI_HOURLY_MIN_COVERAGE, load
from vatio.sim.inject import MeterTrace

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent")
SGSC_ROWS = {
    "sgsc-10006414": 36_061,
    "sgsc-10006486": 18_432,
    "sgsc-10006704": 30_273,
    "sgsc-10017554": 29_641,
    "sgsc-10017562": 29_902,
    "sgsc-10017936": 30_652,
}


def epoch(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp())


def row_at(trace: MeterTrace, ts: int) -> int:
    return (ts - int(trace.ts[0])) // trace.step_s


@pytest.fixture(scope="module")
def uci_minute() -> MeterTrace:
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} is absent")
    (trace,) = load(DATA / "uci_household_minute_2007H1.csv.gz", "uci-minute")
    return trace


@pytest.fixture(scope="module")
def uci_hourly() -> MeterTrace:
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} is absent")
    (trace,) = load(DATA / "uci_household_hourly_2006_2010.csv.gz", "uci-hourly")
    return trace


@needs_data
def test_uci_minute_rows_gaps_and_utc(uci_minute: MeterTrace) -> None:
    trace = uci_minute
    assert trace.device_id == "uci-sceaux"
    assert (len(trace), trace.step_s, trace.tz) == (260_640, 60, "Europe/Paris")
    assert int(np.isnan(trace.power_w).sum()) == 3_771
    # index 0 is 2007-01-01 00:00 CET; the clock keeps CET all year (181 full days).
    assert int(trace.ts[0]) == epoch(2006, 12, 31, 23)
    assert int(trace.ts[-1]) == epoch(2007, 6, 30, 22, 59)
    assert trace.power_w[0] == pytest.approx(2580.0)
    assert trace.voltage_v[0] == pytest.approx(241.97)
    late_april = row_at(trace, epoch(2007, 4, 29, 11))
    assert np.isnan(trace.power_w[late_april])
    assert np.isnan(trace.energy_wh[late_april])
    known = np.isfinite(trace.power_w[1:]) & np.isfinite(trace.power_w[:-1])
    np.testing.assert_allclose(np.diff(trace.energy_wh)[known], trace.power_w[1:][known] / 60, atol=1e-3)


@needs_data
def test_uci_hourly_rows_masks_and_utc(uci_hourly: MeterTrace) -> None:
    trace = uci_hourly
    assert (len(trace), trace.step_s) == (34_589, 3600)
    assert int(trace.ts[0]) == epoch(2006, 12, 16, 16)  # 17:00 CET
    assert int(trace.ts[-1]) == epoch(2010, 11, 26, 20)
    # 421 hours with Voltage == 0 and 45 under UCI_HOURLY_MIN_COVERAGE of the 14,400 mark.
    assert UCI_HOURLY_MIN_COVERAGE == 0.95
    assert int(np.isnan(trace.power_w).sum()) == 421 + 45
    assert np.isnan(trace.power_w[0]), "the first hour is partly measured (recording began 17:24)"
    assert trace.power_w[1] == pytest.approx(217.932 / 60 * 1000)
    assert trace.voltage_v[1] == pytest.approx(14074.81 / 60)


@needs_data
def test_uci_hourly_and_minute_agree_hour_by_hour(uci_minute: MeterTrace, uci_hourly: MeterTrace) -> None:
    """Both loaders put the same house on the same UTC clock: hourly = mean of its minutes."""
    first = row_at(uci_hourly, int(uci_minute.ts[0]))
    hours = len(uci_minute) // 60
    hourly = uci_hourly.power_w[first : first + hours]
    minutes = uci_minute.power_w.reshape(hours, 60)
    complete = np.isfinite(minutes).all(axis=1) & np.isfinite(hourly)
    assert complete.sum() > 4000
    np.testing.assert_allclose(hourly[complete], minutes[complete].mean(axis=1), rtol=1e-9)


@needs_data
def test_sgsc_rows_per_customer_and_utc() -> None:
    traces = load(DATA / "sgsc_households_halfhourly.csv.gz", "sgsc")
    assert {t.device_id: int(t.present.sum()) for t in traces} == SGSC_ROWS
    first = traces[0]
    assert first.device_id == "sgsc-10006414"
    assert (first.step_s, first.tz) == (1800, "Australia/Sydney")
    assert int(first.ts[0]) == epoch(2012, 2, 9, 22)  # 2012-02-10 08:00 AEST
    assert first.power_w[0] == pytest.approx(0.141 * 2000)
    assert np.diff(first.energy_wh)[0] == pytest.approx(0.088 * 1000, abs=1e-3)
    # AEST all year: the DST-start night (2012-10-07) has its 02:00 and 02:30 rows in place.
    dst_start = row_at(first, epoch(2012, 10, 6, 16))  # 02:00 AEST
    assert np.isfinite(first.power_w[dst_start : dst_start + 2]).all()


def test_bad_format_zone_or_file_raise_config_errors(tmp_path: Path) -> None:
    good = tmp_path / "in.csv"
    good.write_text("timestamp,device_id,power_w\n2026-01-01T00:00:00Z,m-1,1\n2026-01-01T00:15:00Z,m-1,2\n")
    with pytest.raises(ConfigError, match="unknown data format"):
        load(good, "parquet")
    with pytest.raises(ConfigError, match="unknown time zone"):
        load(good, "csv", tz="Mars/Olympus")
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "missing.csv", "csv")
    with pytest.raises(ConfigError, match="is not a uci-minute file"):
        load(good, "uci-minute")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "score.csv"
    path.write_text(text)
    return path


def test_csv_contract_with_utc_offsets_both_columns_and_a_gap(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "timestamp,device_id,power_w,energy_kwh\n"
        "2026-03-01T00:00:00Z,plug-1,400,0.1\n"
        "2026-03-01T00:15:00Z,plug-1,,0.2\n"
        "2026-03-01T01:45:00+01:00,plug-1,800,0.2\n"  # 00:45Z; 00:30Z is missing
        "2026-03-01T00:00:00Z,meter_2,100,\n"
        "2026-03-01T00:30:00Z,meter_2,300,\n",
    )
    plug, meter = sorted(load(path, "csv"), key=lambda t: t.device_id != "plug-1")
    assert plug.device_id == "plug-1"
    assert plug.step_s == 900
    assert plug.ts.tolist() == [epoch(2026, 3, 1, 0, m) for m in (0, 15, 30, 45)]
    assert np.array_equal(plug.power_w, [400.0, 800.0, np.nan, 800.0], equal_nan=True)
    assert np.array_equal(np.diff(plug.energy_wh), [200.0, np.nan, np.nan], equal_nan=True)
    assert np.isnan(plug.voltage_v[2])
    assert meter.step_s == 1800
    assert meter.tz == "UTC"
    assert np.diff(meter.energy_wh).tolist() == [150.0]


def test_csv_naive_local_times_across_the_dst_end(tmp_path: Path) -> None:
    hours = ["00:00", "01:00", "02:00", "02:00", "03:00"]  # 25 October 2026, Paris: 02:00 twice
    body = "".join(f"2026-10-25 {h}:00,h-1,{i}\n" for i, h in enumerate(hours))
    (trace,) = load(write(tmp_path, "timestamp,device_id,energy_kwh\n" + body), "csv", tz="Europe/Paris")
    assert trace.ts.tolist() == [epoch(2026, 10, 24, 22) + 3600 * i for i in range(5)]
    assert trace.power_w.tolist() == [0.0, 1000.0, 2000.0, 3000.0, 4000.0]
    assert trace.tz == "Europe/Paris"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,device_id,power_w\n", "needs columns timestamp, device_id"),
        ("timestamp,device_id,current_a\n2026-01-01T00:00:00Z,m-1,1\n", "power_w and/or energy_kwh"),
        ("timestamp,device_id,power_w\n", "no data rows"),
        ("", "not a readable CSV"),
        ("timestamp,device_id,power_w\n2026-01-01T00:00Z,m-1,1\n2026-01-01T00:15Z,m-1,lots\n", "line 3: power_w"),
        ("timestamp,device_id,power_w\n2026-01-01T00:00Z,m-1,inf\n2026-01-01T00:15Z,m-1,1\n", "line 2: power_w"),
        ("timestamp,device_id,power_w\n2026-01-01T00:00Z,m 1,1\n2026-01-01T00:15Z,m 1,1\n", "line 2: device_id"),
        ("timestamp,device_id,power_w\nyesterday,m-1,1\n2026-01-01T00:15Z,m-1,1\n", "line 2: timestamp"),
        ("timestamp,device_id,power_w\n2026-01-01T00:00Z,m-1,1\n2026-01-01 00:15,m-1,1\n", "line 3: mixes"),
        ("timestamp,device_id,power_w\n2026-01-01T00:00Z,m-1,1\n", "has one row"),
        (
            "timestamp,device_id,power_w\n2026-01-01T00:00Z,m-1,1\n2026-01-01T00:15Z,m-1,1\n2026-01-01T00:00Z,m-1,2\n",
            "lines 2 and 4: duplicate timestamp",
        ),
        (
            "timestamp,device_id,power_w\n2026-01-01T00:00Z,m-1,1\n2026-01-01T00:15Z,m-1,1\n"
            "2026-01-01T00:30Z,m-1,1\n2026-01-01T00:40Z,m-1,1\n",
            "line 5: off device m-1's regular 900 s grid",
        ),
    ],
)
def test_csv_contract_rejects_bad_input_clearly(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(write(tmp_path, text), "csv")


def test_csv_naive_time_that_does_not_exist_locally(tmp_path: Path) -> None:
    body = "timestamp,device_id,power_w\n2026-03-29 01:30:00,m-1,1\n2026-03-29 02:30:00,m-1,1\n"
    with pytest.raises(ConfigError, match="give timestamps with a UTC offset"):
        load(write(tmp_path, body), "csv", tz="Europe/Paris")
