"""`vatio tariff`: set and list a site's tariffs from TOML files.

A tariff file::

    name = "Night saver"
    currency = "EUR"
    effective_from = 2026-01-01        # a local date; may be in the past
    standing_charge_per_day = 0.45
    export_price_per_kwh = 0.08        # optional

    [[rates]]                          # together the rates cover the week exactly once
    days = [0, 1, 2, 3, 4, 5, 6]       # 0 = Monday
    start = "07:00"                    # times on a 15-minute boundary (:00, :15, :30, :45)
    end = "23:00"
    price_per_kwh = 0.30

    [[rates]]
    days = [0, 1, 2, 3, 4, 5, 6]
    start = "23:00"                    # wraps past midnight
    end = "07:00"
    price_per_kwh = 0.12

Setting a tariff with the ``effective_from`` of an existing one replaces it;
costs are computed at query time, so they follow at once. Errors raise
:class:`~vatio.errors.ConfigError`, which ``vatio`` turns into exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tomllib
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from vatio.errors import ConfigError
from vatio.model import Rate, Tariff

DEFAULT_DB = "sqlite:///data/vatio.db"


def tariff_from_mapping(data: dict[str, Any]) -> Tariff:
    """A validated tariff from a parsed TOML (or JSON) document.

    >>> tariff_from_mapping({"name": "flat", "currency": "EUR", "effective_from": "2026-01-01",
    ...     "standing_charge_per_day": 0.4, "rates": [{"days": [0, 1, 2, 3, 4, 5, 6], "start": "00:00",
    ...     "end": "24:00", "price_per_kwh": 0.25}]}).price_at(weekday=6, minute=0)
    0.25
    """
    try:
        effective = data["effective_from"]
        export = data.get("export_price_per_kwh")
        rates = tuple(
            Rate(days=tuple(r["days"]), start=r["start"], end=r["end"], price_per_kwh=float(r["price_per_kwh"]))
            for r in data["rates"]
        )
        return Tariff(
            name=str(data["name"]),
            currency=str(data["currency"]),
            effective_from=effective if isinstance(effective, date) else date.fromisoformat(str(effective)),
            standing_charge_per_day=float(data.get("standing_charge_per_day", 0.0)),
            export_price_per_kwh=None if export is None else float(export),
            rates=rates,
        )
    except KeyError as exc:
        raise ConfigError(f"tariff is missing {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid tariff: {exc}") from exc


def read_tariff(path: Path) -> Tariff:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return tariff_from_mapping(data)


def tariff_json(tariff: Tariff) -> dict[str, Any]:
    return {
        "id": tariff.id,
        "name": tariff.name,
        "currency": tariff.currency,
        "effective_from": tariff.effective_from.isoformat(),
        "standing_charge_per_day": tariff.standing_charge_per_day,
        "export_price_per_kwh": tariff.export_price_per_kwh,
        "rates": [
            {"days": list(r.days), "start": r.start, "end": r.end, "price_per_kwh": r.price_per_kwh}
            for r in tariff.rates
        ],
    }


async def _run(args: argparse.Namespace) -> int:
    from vatio.energy.site import add_tariff
    from vatio.model.tariff import Site
    from vatio.store import open_store

    Site(site_id=args.site)  # validates the id before touching the database
    tariff = read_tariff(Path(args.file)) if args.action == "set" else None
    store = open_store(args.db)
    try:
        await store.migrate()
        if tariff is not None:
            print(json.dumps(tariff_json(await add_tariff(store, args.site, tariff, create_site=True))))
        else:
            print(json.dumps([tariff_json(t) for t in await store.tariffs(args.site)], indent=2))
    finally:
        await store.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vatio tariff", description="set and list a site's tariffs")
    sub = parser.add_subparsers(dest="action", required=True)
    set_ = sub.add_parser("set", help="add a tariff from a TOML file (same effective_from: replace)")
    set_.add_argument("site")
    set_.add_argument("--file", required=True, help="tariff TOML file")
    list_ = sub.add_parser("list", help="print the site's tariffs as JSON, oldest first")
    list_.add_argument("site")
    for command in (set_, list_):
        command.add_argument("--db", default=DEFAULT_DB, help=f"database URL (default {DEFAULT_DB})")
    return parser


def main(argv: Sequence[str]) -> int:
    """Entry point of ``vatio tariff``; bad input raises :class:`~vatio.errors.ConfigError` (exit 2)."""
    args = build_parser().parse_args(list(argv))
    return asyncio.run(_run(args))
