"""`vatio models list|promote`: the trained model versions in the store, and making one live.

``list`` prints one line per version, newest first (``--json`` for one JSON
object per line); ``promote ID`` makes a shadow (or retired) version live —
the previous live version of its detector and device retires, and a running
``vatio detect`` switches to it at its next model refresh, without a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence

from vatio.model import ModelStatus, ModelVersion
from vatio.store import open_store


def describe(m: ModelVersion) -> dict[str, object]:
    """A version as JSON-able fields (without its parameters)."""
    return {
        "id": m.id, "detector": m.detector, "device": m.device_id, "version": m.version, "status": m.status.value,
        "trained_from": m.trained_from.isoformat(), "trained_to": m.trained_to.isoformat(),
        "created_at": m.created_at.isoformat(), "params_bytes": len(m.params), "metrics": m.metrics,
    }  # fmt: skip


def _line(m: ModelVersion) -> str:
    metrics = " ".join(f"{k}={v:g}" for k, v in sorted(m.metrics.items()))
    return (
        f"{m.id:>6} {m.detector:<10} {m.device_id:<24} v{m.version:<4} {m.status.value:<8} "
        f"{m.trained_from:%Y-%m-%d}..{m.trained_to:%Y-%m-%d} {metrics}"
    )


async def _list(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        await store.migrate()
        models = await store.models(detector=args.detector, device_id=args.device)
    finally:
        await store.close()
    for m in models:
        print(json.dumps(describe(m)) if args.json else _line(m))
    return 0


async def _promote(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        await store.migrate()
        model = await store.set_model_status(args.id, ModelStatus.LIVE)
    finally:
        await store.close()
    print(f"model {model.id} ({model.detector} {model.device_id} v{model.version}) is live")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vatio models", description=__doc__.splitlines()[0] if __doc__ else "")
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="model versions, newest first")
    listing.add_argument("--db", required=True)
    listing.add_argument("--device", help="only this device")
    listing.add_argument("--detector", help="only this detector (e.g. seasonal)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(run=_list)
    promote = sub.add_parser("promote", help="make a version live (the live one retires)")
    promote.add_argument("id", type=int, help="model id (see list)")
    promote.add_argument("--db", required=True)
    promote.set_defaults(run=_promote)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(asyncio.run(args.run(args)))
