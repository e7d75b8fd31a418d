"""`vatio tariff set/list` against a real SQLite file, and its exit code 2 on bad input."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from vatio.cli import main
from vatio.energy.demo import demo_tariff, install_demo_tariffs
from vatio.store import open_store

NIGHT_SAVER = """
name = "Night saver"
currency = "GBP"
effective_from = 2026-01-01
standing_charge_per_day = 0.45
export_price_per_kwh = 0.08

[[rates]]
days = [0, 1, 2, 3, 4, 5, 6]
start = "07:00"
end = "23:00"
price_per_kwh = 0.30

[[rates]]
days = [0, 1, 2, 3, 4, 5, 6]
start = "23:00"
end = "07:00"
price_per_kwh = 0.12
"""


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cli.db"


def write(tmp_path: Path, text: str, name: str = "tariff.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_set_then_list_and_replace(tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tariff", "set", "home-1", "--file", write(tmp_path, NIGHT_SAVER), "--db", db]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["name"] == "Night saver"
    assert created["effective_from"] == "2026-01-01"
    assert created["rates"][1] == {"days": list(range(7)), "start": "23:00", "end": "07:00", "price_per_kwh": 0.12}

    cheaper = NIGHT_SAVER.replace("0.12", "0.10")
    assert main(["tariff", "set", "home-1", "--file", write(tmp_path, cheaper, "v2.toml"), "--db", db]) == 0
    capsys.readouterr()
    assert main(["tariff", "list", "home-1", "--db", db]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["id"] == created["id"]
    assert listed["rates"][1]["price_per_kwh"] == 0.10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (NIGHT_SAVER.replace('end = "07:00"', 'end = "08:00"'), "rates overlap on Mon 07:00"),
        (NIGHT_SAVER.replace('start = "23:00"', 'start = "23:30"'), "Mon 23:00 without a price"),
        (NIGHT_SAVER.replace('currency = "GBP"', ""), "missing 'currency'"),
        (NIGHT_SAVER.replace("2026-01-01", '"first of January"'), "invalid tariff"),
        ("name = ", "not valid TOML"),
        (NIGHT_SAVER.replace("Night saver", "Night\\u0000saver"), "must not contain NUL"),
    ],
)
def test_bad_tariff_files_exit_2(
    tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    assert main(["tariff", "set", "home-1", "--file", write(tmp_path, text), "--db", db]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vatio tariff: error:")
    assert message in err


def test_missing_file_and_bad_site_exit_2(tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tariff", "set", "home-1", "--file", str(tmp_path / "nope.toml"), "--db", db]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["tariff", "list", "bad site", "--db", db]) == 2
    assert "site id" in capsys.readouterr().err


async def test_demo_tariffs_go_to_sites_without_one(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/demo.db")
    await store.migrate()
    try:
        await store.put_tariff("home-2", demo_tariff(date(2020, 1, 1)))
        given = await install_demo_tariffs(store, ["home-1", "home-2"], today=date(2026, 5, 4))
        assert given == ["home-1"]
        [tariff] = await store.tariffs("home-1")
        assert tariff.effective_from == date(2026, 5, 4)
        assert await install_demo_tariffs(store, ["home-1", "home-2"]) == []
    finally:
        await store.close()
