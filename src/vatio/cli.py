"""The `vatio` command: up, ingest, detect, sim, api, db, score, eval, bench.

Invalid input (a bad URL, an unknown option, an unreachable database at start)
prints one clear line on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from vatio import __version__
from vatio.errors import ConfigError, VatioError

EXIT_USAGE = 2
Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int] | int]


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _flush_interval(text: str) -> float:
    value = _positive_float(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"at most 1 second, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


# -- commands ------------------------------------------------------------------------
async def cmd_up(args: argparse.Namespace) -> int:
    from vatio.up import UpOptions, run_up

    await run_up(
        UpOptions(
            homes=args.homes,
            devices_per_home=args.devices_per_home,
            interval_s=args.interval,
            port=args.port,
            host=args.host,
            mqtt_port=args.mqtt_port,
            db=args.db,
            broker=args.broker,
            data_dir=Path(args.data_dir),
            run_for_s=args.run_for,
            raw_days=args.raw_days,
        )
    )
    return 0


async def cmd_ingest(args: argparse.Namespace) -> int:
    from vatio.ingest.pipeline import IngestPipeline
    from vatio.ingest.service import IngestOptions, IngestService
    from vatio.store import open_store
    from vatio.store.maintenance import run_maintenance
    from vatio.transport import BrokerUrl

    broker = BrokerUrl.parse(args.broker)
    store = open_store(args.db)
    await store.migrate()
    pipeline = IngestPipeline(
        store=store, batch_readings=args.batch, flush_interval_s=args.flush_interval, raw_days=args.raw_days
    )
    options = IngestOptions(group=args.group, instance=args.instance, protocol=args.protocol, shared=not args.no_shared)
    service = IngestService(broker=broker, pipeline=pipeline, options=options)
    logging.getLogger("vatio").info("ingest %s -> %s as %s", broker, store.url, options.client_id)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(service.run(), name="ingest")
            if not args.no_rollups:
                group.create_task(run_maintenance(store, raw_days=args.raw_days), name="maintenance")
            if args.report_every:
                group.create_task(_report(pipeline, args.report_every), name="report")
    finally:
        await store.close()
    return 0


async def _report(pipeline: Any, every_s: float, name: str = "ingest") -> None:
    while True:
        await asyncio.sleep(every_s)
        print(json.dumps({name: _counters(pipeline.counters)}), flush=True)


def _counters(counters: Any) -> dict[str, Any]:
    return {name: getattr(counters, name) for name in counters.__slots__}


async def cmd_detect(args: argparse.Namespace) -> int:
    from vatio.detect.service import DetectOptions, DetectPipeline
    from vatio.detect.serving import Sensitivity
    from vatio.ingest.service import IngestOptions, IngestService
    from vatio.sim.wire import FastPublisher
    from vatio.store import open_store
    from vatio.transport import BrokerUrl

    broker = BrokerUrl.parse(args.broker)
    sensitivity = Sensitivity.load(Path(args.sensitivity)) if args.sensitivity else Sensitivity()
    store = open_store(args.db)
    await store.migrate()
    options = IngestOptions(
        group=args.group, instance=args.instance, protocol=args.protocol, shared=not args.no_shared, status=False
    )
    alerts_id = f"{options.client_id}-alerts"
    try:
        async with FastPublisher(host=broker.host, port=broker.port, client_id=alerts_id, window=1000) as alerts:

            async def publish(topic: str, payload: bytes) -> None:
                await alerts.publish(topic, payload, qos=1)

            pipeline = DetectPipeline(
                store=store,
                publish=publish,
                options=DetectOptions(
                    threshold=args.threshold,
                    checkpoint_every_s=args.checkpoint_every,
                    models_every_s=args.models_every,
                    sensitivity=sensitivity.with_muted(tuple(args.mute)),
                ),
            )
            await pipeline.restore()
            service = IngestService(broker=broker, pipeline=pipeline, options=options)
            async with asyncio.TaskGroup() as group:
                group.create_task(service.run(), name="detect")
                if args.report_every:
                    group.create_task(_report(pipeline, args.report_every, "detect"), name="report")
    finally:
        await store.close()
    return 0


async def cmd_sim(args: argparse.Namespace) -> int:
    from vatio.sim.publish import SimOptions, run_sim
    from vatio.transport import BrokerUrl

    options = SimOptions(
        homes=args.homes,
        devices_per_home=args.devices_per_home,
        interval_s=args.interval,
        batch=args.batch,
        qos=args.qos,
        encoding=args.encoding,
        protocol=args.protocol,
        seed=args.seed,
    )
    task = asyncio.ensure_future(run_sim(BrokerUrl.parse(args.broker), options))
    if args.run_for:
        await asyncio.sleep(args.run_for)
        task.cancel()
    await asyncio.gather(task, return_exceptions=args.run_for is not None)
    return 0


async def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from vatio.api import create_app
    from vatio.store import open_store
    from vatio.transport import BrokerUrl

    broker = BrokerUrl.parse(args.broker) if args.broker else None
    app = create_app(open_store(args.db), manage_store=True, broker=broker, broker_protocol=args.protocol)
    await uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info")).serve()
    return 0


async def cmd_db(args: argparse.Namespace) -> int:
    from vatio.store import open_store

    store = open_store(args.db)
    try:
        await store.migrate()
        if args.db_command == "stats":
            stats = await store.stats()
            fields = {name: getattr(stats, name) for name in stats.__slots__}
            print(json.dumps(fields) if args.json else "\n".join(f"{k}: {v}" for k, v in fields.items()))
        elif args.db_command == "retention":
            print(await store.apply_retention(raw_days=args.raw_days))
        elif args.db_command == "rollups":
            total = 0
            while done := await store.refresh_rollups():
                total += done
            print(f"recomputed {total} dirty ranges")
        else:
            print(f"{store.url}: schema up to date")
    finally:
        await store.close()
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Benchmarks run their own event loops and processes, so this one is synchronous."""
    bench_dir = Path(__file__).resolve().parents[2] / "bench"
    script = bench_dir / f"{args.name.replace('-', '_')}.py"
    if not script.is_file():
        raise ConfigError(f"no benchmark {args.name!r} (looked for {script}; run from a source checkout)")
    spec = importlib.util.spec_from_file_location(f"vatio_bench_{script.stem}", script)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return int(module.main(list(args.rest)) or 0)


# -- parser --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vatio", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vatio {__version__}")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run everything in one process on embedded defaults")
    up.add_argument("--for", dest="run_for", type=_positive_float, help="stop after this many seconds")
    up.add_argument("--homes", type=_positive_int, default=3)
    up.add_argument("--devices-per-home", type=_positive_int, default=2)
    up.add_argument("--interval", type=_positive_float, default=2.0, help="seconds between readings")
    up.add_argument("--port", type=int, default=8000, help="API and dashboard port")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--mqtt-port", type=int, default=1883, help="port of the in-process broker")
    up.add_argument("--db", help="database URL (default: SQLite in --data-dir)")
    up.add_argument("--broker", help="mqtt://host:port of a real broker (default: in-process)")
    up.add_argument("--data-dir", default="data")
    up.add_argument("--raw-days", type=_positive_int, default=90, help="keep raw readings this long")
    up.set_defaults(handler=cmd_up)

    ingest = sub.add_parser("ingest", help="consume telemetry from a broker into the store")
    ingest.add_argument("--broker", required=True)
    ingest.add_argument("--db", required=True)
    ingest.add_argument("--group", default="vatio-ingest", help="shared-subscription group")
    ingest.add_argument("--instance", default="0", help="stable per process: names its session")
    ingest.add_argument("--protocol", type=int, choices=[4, 5], default=5)
    ingest.add_argument("--no-shared", action="store_true", help="plain subscription (no $share)")
    ingest.add_argument("--batch", type=_positive_int, default=10_000, help="readings per write")
    ingest.add_argument("--flush-interval", type=_flush_interval, default=0.5, help="seconds, at most 1")
    ingest.add_argument("--no-rollups", action="store_true", help="leave rollups to another process")
    ingest.add_argument("--raw-days", type=_positive_int, default=None)
    ingest.add_argument("--report-every", type=_positive_float, default=None, help="print counters (JSON)")
    ingest.set_defaults(handler=cmd_ingest)

    detect = sub.add_parser("detect", help="streaming detection: anomalies to the store, alert events to MQTT")
    detect.add_argument("--broker", required=True)
    detect.add_argument("--db", required=True)
    detect.add_argument("--group", default="vatio-detect", help="shared-subscription group")
    detect.add_argument("--instance", default="0", help="stable per process: names its session")
    detect.add_argument("--protocol", type=int, choices=[4, 5], default=5)
    detect.add_argument("--no-shared", action="store_true")
    detect.add_argument("--threshold", type=_positive_float, default=1.0, help="score at which a reading is anomalous")
    detect.add_argument("--checkpoint-every", type=_positive_float, default=10.0, help="seconds between checkpoints")
    detect.add_argument("--report-every", type=_positive_float, default=None, help="print counters (JSON)")
    detect.add_argument("--models-every", type=_positive_float, default=30.0, help="seconds between model reloads")
    detect.add_argument("--sensitivity", help="TOML file of per-device threshold multipliers and mutes")
    detect.add_argument("--mute", action="append", default=[], help="record no anomalies of this device")
    detect.set_defaults(handler=cmd_detect)

    sim = sub.add_parser("sim", help="simulated meters publishing over MQTT")
    sim.add_argument("--broker", required=True)
    sim.add_argument("--homes", type=_positive_int, default=3)
    sim.add_argument("--devices-per-home", type=_positive_int, default=2)
    sim.add_argument("--interval", type=_positive_float, default=2.0)
    sim.add_argument("--batch", type=_positive_int, default=1, help="readings per message")
    sim.add_argument("--qos", type=int, choices=[0, 1], default=1)
    sim.add_argument("--encoding", choices=["json", "cbor", "pb"], default="json")
    sim.add_argument("--protocol", type=int, choices=[4, 5], default=5)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--for", dest="run_for", type=_positive_float)
    sim.set_defaults(handler=cmd_sim)

    api = sub.add_parser("api", help="serve the REST API")
    api.add_argument("--db", required=True)
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--broker", help="mqtt://host:port to subscribe to for the live WebSocket feed")
    api.add_argument("--protocol", type=int, choices=(4, 5), default=5, help="MQTT protocol level of --broker")
    api.set_defaults(handler=cmd_api)

    db = sub.add_parser("db", help="database tasks")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_commands = {
        "migrate": "create or upgrade the schema",
        "stats": "counts of readings, devices, dead letters",
        "rollups": "recompute dirty rollups now",
        "retention": "drop raw readings older than --raw-days",
    }
    for name, text in db_commands.items():
        command = db_sub.add_parser(name, help=text)
        command.add_argument("--db", required=True)
        if name == "stats":
            command.add_argument("--json", action="store_true")
        if name == "retention":
            command.add_argument("--raw-days", type=_positive_int, required=True)
    db.set_defaults(handler=cmd_db)

    for words, (_, text) in DELEGATED.items():
        if len(words) == 1:
            sub.add_parser(words[0], help=text, add_help=False)
    sim.epilog = "also: vatio sim replay FILE ..., vatio sim calibrate, vatio sim fleet (see --help of each)"

    bench = sub.add_parser("bench", help="run a benchmark from bench/ (prints JSON)")
    bench.add_argument("name", help="e.g. ingest, mqtt-clients")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="options of the benchmark")
    bench.set_defaults(handler=cmd_bench)
    return parser


#: Commands with their own parser in their own module: (words) -> module with main(argv).
DELEGATED: dict[tuple[str, ...], tuple[str, str]] = {
    ("score",): ("vatio.score", "score a CSV file causally (the vatio score contract)"),
    # Before ("eval",): the first match wins.
    ("eval", "bound"): ("vatio.eval.delay_bound", "an optimistic bound on how early a step up can be seen"),
    ("eval",): ("vatio.eval.report", "evaluate detectors on simulated and real homes"),
    ("sim", "replay"): ("vatio.sim.replay", "replay a real data set through the pipeline"),
    ("sim", "calibrate"): ("vatio.sim.calibrate", "compare simulated homes with real ones"),
    ("sim", "fleet"): ("vatio.sim.fleet", "thousands of meters in one process (MQTT, CoAP or HTTP)"),
    ("edge",): ("vatio.edge.southbound", "the edge gateway's CoAP and HTTP receivers, forwarding to MQTT"),
    ("alert",): ("vatio.alert.service", "alerting: alert lifecycle, outbox, webhook/email/MQTT/Home Assistant"),
    ("tariff",): ("vatio.energy.tariff_cli", "set and list a site's tariffs (TOML files)"),
    ("train",): ("vatio.detect.train", "fit each device's seasonal model from its history (a model version)"),
    ("models",): ("vatio.detect.models_cli", "list model versions, promote one to live"),
}


def _delegate(argv: Sequence[str]) -> int | None:
    for words, (module_name, _) in DELEGATED.items():
        if tuple(argv[: len(words)]) == words:
            module = importlib.import_module(module_name)
            try:
                return int(module.main(list(argv[len(words) :])) or 0)
            except VatioError as exc:
                print(f"vatio {' '.join(words)}: error: {exc}", file=sys.stderr)
                return EXIT_USAGE
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    delegated = _delegate(argv)
    if delegated is not None:
        return delegated
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: Handler = args.handler
    try:
        outcome = handler(args)
        return outcome if isinstance(outcome, int) else asyncio.run(outcome)
    except KeyboardInterrupt:
        return 130
    except VatioError as exc:
        print(f"vatio: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
