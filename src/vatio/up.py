"""`vatio up`: the whole system in one process on embedded defaults.

Broker (in-process unless ``--broker`` is given), store, simulator, ingest,
rollup maintenance and the API run as named tasks of one TaskGroup; ``--for``
stops them all cleanly after that many seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import uvicorn
from rich.console import Console
from rich.live import Live
from rich.table import Table

from vatio.alert.service import AlertStage, AlertStageOptions
from vatio.api import create_app
from vatio.broker import EmbeddedBroker, port_free
from vatio.detect.service import DetectPipeline
from vatio.energy.demo import install_demo_main_meters, install_demo_tariffs, main_meters_of
from vatio.errors import ConfigError
from vatio.ingest.pipeline import IngestPipeline
from vatio.ingest.service import IngestOptions, IngestService
from vatio.sim.publish import SimCounters, SimOptions, build_meters, run_sim
from vatio.store import Store, open_store, redact
from vatio.store.maintenance import run_maintenance
from vatio.transport import BrokerUrl

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpOptions:
    homes: int = 3
    devices_per_home: int = 2
    interval_s: float = 2.0
    port: int = 8000
    host: str = "127.0.0.1"
    mqtt_port: int = 1883
    db: str | None = None
    broker: str | None = None
    data_dir: Path = Path("data")
    run_for_s: float | None = None
    raw_days: int | None = 90


@contextlib.asynccontextmanager
async def _broker(options: UpOptions) -> AsyncIterator[tuple[BrokerUrl, bool]]:
    if options.broker:
        yield BrokerUrl.parse(options.broker), False
        return
    async with EmbeddedBroker(host="127.0.0.1", port=options.mqtt_port) as embedded:
        yield embedded.url, True


async def run_up(options: UpOptions, console: Console | None = None) -> None:
    # Not a terminal (CI, a log file): no wrapping at 80 columns.
    console = console or Console(soft_wrap=True)
    if not port_free(options.host, options.port):
        raise ConfigError(f"port {options.port} is in use: choose another with --port")
    db_url = options.db or f"sqlite:///{options.data_dir.resolve() / 'vatio.db'}"
    store = open_store(db_url)
    await store.migrate()
    await install_demo_tariffs(store, (f"{SimOptions().site_prefix}-{h + 1}" for h in range(options.homes)))
    fleet = build_meters(SimOptions(homes=options.homes, devices_per_home=options.devices_per_home))
    await install_demo_main_meters(store, main_meters_of((m.site_id, m.device_id) for m in fleet))
    try:
        async with _broker(options) as (broker, embedded):
            await _run_stages(options, console, store, broker, embedded)
    finally:
        await store.close()


async def _run_stages(options: UpOptions, console: Console, store: Store, broker: BrokerUrl, embedded: bool) -> None:
    # amqtt speaks MQTT 3.1.1 only; a real broker gets v5 and shared subscriptions.
    protocol: Literal[4, 5] = 4 if embedded else 5
    pipeline = IngestPipeline(store=store, raw_days=options.raw_days)
    ingest = IngestService(
        broker=broker,
        pipeline=pipeline,
        options=IngestOptions(group="vatio-up-ingest", protocol=protocol),
    )
    # Detection and alerting in-process, through the broker and the store like their standalone stages.
    alert_options = AlertStageOptions(client_id="vatio-up-alert", protocol=protocol)
    alerting = AlertStage(store=store, broker=broker, options=alert_options)
    detect = DetectPipeline(store=store, publish=alerting.publish)
    await detect.restore()
    detection = IngestService(
        broker=broker, pipeline=detect, options=IngestOptions(group="vatio-up-detect", protocol=protocol, status=False)
    )
    sim_counters = SimCounters()
    sim = SimOptions(
        homes=options.homes,
        devices_per_home=options.devices_per_home,
        interval_s=options.interval_s,
        protocol=protocol,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(store, broker=broker, broker_protocol=protocol),
            host=options.host,
            port=options.port,
            log_level="warning",
        )
    )
    api_url = f"http://{options.host}:{options.port}"
    console.print(f"[bold green]Vatio is up[/]  API: [link={api_url}]{api_url}[/] (OpenAPI docs: {api_url}/docs)")
    console.print(f"  MQTT broker: {broker}{' (in-process)' if embedded else ''}   store: {redact(store.url)}")
    fleet = f"{options.homes} homes x {options.devices_per_home} meters"
    console.print(f"  simulating {fleet}, a reading every {options.interval_s:g}s")
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(ingest.run(), name="ingest"),
            group.create_task(run_maintenance(store, raw_days=options.raw_days), name="maintenance"),
            group.create_task(server.serve(), name="api"),
        ]
        stages = [group.create_task(detection.run(), name="detect"), group.create_task(alerting.run(), name="alert")]
        await asyncio.wait_for(ingest.connected.wait(), timeout=30)
        tasks.append(group.create_task(run_sim(broker, sim, sim_counters), name="sim"))
        display = group.create_task(_display(console, pipeline, sim_counters), name="display")
        try:
            if options.run_for_s is not None:
                await asyncio.sleep(options.run_for_s)
            else:
                await asyncio.Event().wait()
        finally:
            display.cancel()
            tasks[-1].cancel()  # the simulator first: its meters say goodbye
            await asyncio.gather(tasks[-1], return_exceptions=True)
            await asyncio.sleep(pipeline.flush_interval_s * 2)
            server.should_exit = True
            for task in [*tasks[:2], *stages]:
                task.cancel()
    console.print(
        f"[bold]stopped[/]: {pipeline.counters.readings_inserted} readings stored, "
        f"{pipeline.counters.dead_letters} dead letters"
    )


async def _display(console: Console, pipeline: IngestPipeline, sim: SimCounters) -> None:
    started = time.monotonic()
    last_count, last_time = 0, started
    rate = 0.0

    def table() -> Table:
        c = pipeline.counters
        grid = Table(title="Vatio live", show_header=True, header_style="bold")
        for column in ("meters connected", "published", "received", "stored", "readings/s", "dead letters", "up"):
            grid.add_column(column, justify="right")
        grid.add_row(
            f"{len(sim.connected)}/{len(sim.devices)}",
            str(sim.readings),
            str(c.readings_received),
            str(c.readings_inserted),
            f"{rate:,.1f}",
            str(c.dead_letters),
            f"{time.monotonic() - started:,.0f}s",
        )
        return grid

    if not console.is_terminal:
        while True:
            await asyncio.sleep(5)
            now, count = time.monotonic(), pipeline.counters.readings_inserted
            rate, last_count, last_time = (count - last_count) / (now - last_time), count, now
            meters = f"{len(sim.connected)}/{len(sim.devices)}"
            console.print(f"meters connected={meters} stored={count} readings/s={rate:.1f}")
    with Live(table(), console=console, refresh_per_second=2) as live:
        while True:
            await asyncio.sleep(1)
            now, count = time.monotonic(), pipeline.counters.readings_inserted
            rate, last_count, last_time = (count - last_count) / (now - last_time), count, now
            live.update(table())
