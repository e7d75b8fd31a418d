"""The dashboard in a real browser (Debian's chromium via Playwright) against a running `vatio up`.

One `vatio up` (in-process broker on a free port, SQLite in a temp dir, three
simulated homes reading every second) serves the whole module. Every test
opens pages in a fresh browser context that records console errors, failed
requests and HTTP error responses; any of them fails the test. Screenshots go
to ``test-artifacts/dashboard/`` (see ``browser.ARTIFACTS``) for CI to keep:
the ones the docs show come from ``test_screenshots.py``, which seeds weeks
of history first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from browser import (
    DESKTOP,
    PHONE,
    Recorder,
    artifacts_dir,
    launch_chromium,
)
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, Page, expect

from vatio.testing import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch_chromium()


#: The device the test overloads: a new appliance on home-1 drawing 60 kW, far over a 63 A fuse.
INJECTED_DEVICE = "home-1-sauna"
UP_SAFETY_S = 300  # `vatio up` stops itself even if this process dies without cleaning up


@dataclass
class System:
    url: str
    mqtt_port: int
    artifacts: Path


def _wait_healthy(url: str, proc: subprocess.Popen[str], timeout_s: float = 40) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"vatio up exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            devices = httpx.get(f"{url}/api/v1/devices", timeout=2).json()["items"]
            if len(devices) >= 6:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("vatio up never served its devices")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("dashboard")
    port, mqtt_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "vatio.cli", "up", "--for", str(UP_SAFETY_S), "--port", str(port),
           "--mqtt-port", str(mqtt_port), "--interval", "1", "--data-dir", str(tmp / "data")]  # fmt: skip
    (tmp / "data").mkdir()
    log = (tmp / "vatio-up.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield System(url=url, mqtt_port=mqtt_port, artifacts=artifacts_dir("dashboard"))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _open(browser: Browser, system: System, viewport: dict[str, int], **options: Any) -> tuple[Page, Recorder]:
    context = browser.new_context(viewport=viewport, **options)  # type: ignore[arg-type]
    page = context.new_page()
    recorder = Recorder()
    recorder.attach(page)
    page.goto(system.url + "/")
    expect(page.locator("main[data-ready=true]")).to_be_attached(timeout=15_000)
    return page, recorder


@pytest.fixture
def desktop(browser: Browser, system: System) -> Iterator[tuple[Page, Recorder]]:
    page, recorder = _open(browser, system, DESKTOP)
    yield page, recorder
    page.context.close()


def _clean(recorder: Recorder) -> None:
    assert recorder.problems == []


def _goto(page: Page, hash_route: str) -> None:
    page.evaluate("route => { location.hash = route }", hash_route)
    expect(page.locator(f"main[data-page={hash_route.split('/')[1]}][data-ready=true]")).to_be_attached(timeout=15_000)


def _screenshot(page: Page, system: System, name: str) -> None:
    page.screenshot(path=str(system.artifacts / name), full_page=True)
    assert (system.artifacts / name).stat().st_size > 10_000, f"{name} is too small to show a page"


def _updates(page: Page) -> int:
    return int(page.locator("#live-power").get_attribute("data-updates") or "0")


def test_overview_updates_live(desktop: tuple[Page, Recorder], system: System) -> None:
    page, recorder = desktop
    expect(page.locator("#site")).to_be_visible()  # three homes: a site selector
    page.wait_for_function("document.querySelector('#live-power').dataset.updates > 0", timeout=15_000)
    first = _updates(page)
    page.wait_for_function(f"document.querySelector('#live-power').dataset.updates > {first + 2}", timeout=15_000)
    assert page.locator("#live-power .value").inner_text().endswith("W")
    # The updates came over the WebSocket feed, not the polling fallback.
    live = [url for url in recorder.frames if "/api/v1/live?site=home-1" in url]
    assert live, recorder.frames
    assert recorder.frames[live[0]] > 2
    points = page.evaluate(
        "() => document.getElementById('live-chart').data.reduce((n, trace) => n + trace.x.length, 0)"
    )
    assert points > first
    for card in ("#today", "#month", "#vs-last-week", "#baseload"):
        expect(page.locator(card)).to_be_visible()
    assert "kWh" in page.locator("#today .value").inner_text()
    _screenshot(page, system, "overview.png")
    _clean(recorder)


def _publish_overload(system: System) -> datetime:
    ts = datetime.now(UTC)
    payload = {"v": 1, "device": INJECTED_DEVICE, "readings": [
        {"ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"), "seq": 1, "power_w": 60_000.0,
         "energy_wh": 1000.0, "voltage_v": 229.0},
    ]}  # fmt: skip
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect("127.0.0.1", system.mqtt_port)
    client.loop_start()
    try:
        info = client.publish(f"vatio/v1/home-1/{INJECTED_DEVICE}/telemetry", json.dumps(payload), qos=1)
        info.wait_for_publish(timeout=10)
    finally:
        client.loop_stop()
        client.disconnect()
    return ts


@pytest.fixture(scope="module")
def overload(system: System) -> datetime:
    """When the 60 kW reading was published (once for the module)."""
    return _publish_overload(system)


def _alert_of(system: System, device: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        items = httpx.get(f"{system.url}/api/v1/alerts", params={"device": device}, timeout=5).json()["items"]
        if items:
            alert: dict[str, Any] = items[0]
            return alert
        time.sleep(1)
    raise AssertionError(f"no alert for {device} within {timeout_s} s")


def test_injected_overload_is_alerted_and_acknowledged_in_the_ui(
    desktop: tuple[Page, Recorder], system: System, overload: datetime
) -> None:
    page, recorder = desktop
    alert = _alert_of(system, INJECTED_DEVICE)
    _goto(page, "#/alerts")
    row = page.locator(f"tr[data-alert-id='{alert['id']}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text(INJECTED_DEVICE)
    expect(row.locator(".explanation")).not_to_be_empty()
    expect(row.locator("[data-action=acknowledge]")).to_be_enabled(timeout=30_000)
    row.locator("[data-action=acknowledge]").click()
    expect(page.locator(f"tr[data-alert-id='{alert['id']}']")).to_have_attribute("data-state", "acknowledged")
    after = httpx.get(f"{system.url}/api/v1/alerts/{alert['id']}", timeout=5).json()
    assert after["state"] == "acknowledged"
    assert after["acknowledged_by"] == "dashboard"
    assert any(entry["to_state"] == "acknowledged" and entry["actor"] == "dashboard" for entry in after["audit"])
    _screenshot(page, system, "alerts.png")
    # Mute and resolve from the same row reach the API too.
    row.locator("[data-action=mute]").click()
    expect(page.locator("#alert-message")).to_contain_text("muted")
    mutes = httpx.get(f"{system.url}/api/v1/mutes", timeout=5).json()["items"]
    assert [(m["device"], m["kind"], m["by"]) for m in mutes] == [(INJECTED_DEVICE, alert["kind"], "dashboard")]
    page.locator(f"tr[data-alert-id='{alert['id']}'] [data-action=resolve]").click()
    expect(page.locator(f"tr[data-alert-id='{alert['id']}']")).to_have_attribute("data-state", "resolved")
    assert httpx.get(f"{system.url}/api/v1/alerts/{alert['id']}", timeout=5).json()["state"] == "resolved"
    _clean(recorder)


def test_device_history_zooms_and_shows_anomalies(
    desktop: tuple[Page, Recorder], system: System, overload: datetime
) -> None:
    page, recorder = desktop
    _goto(page, f"#/device/{INJECTED_DEVICE}")
    chart = page.locator("#history-chart")
    expect(chart).to_have_attribute("data-resolution", "raw")
    expect(page.locator("#anomalies li").first).to_contain_text("over_power", timeout=10_000)
    # Zooming asks the server again for the narrower window.
    with page.expect_response(lambda r: "/history?" in r.url) as zoomed:
        page.evaluate(
            """() => {
                const chart = document.getElementById('history-chart');
                const end = new Date(), start = new Date(end - 10 * 60 * 1000);
                Plotly.relayout(chart, {'xaxis.range': [start, end]});
            }"""
        )
    span = httpx.URL(zoomed.value.url).params
    width_s = (datetime.fromisoformat(span["end"]) - datetime.fromisoformat(span["start"])).total_seconds()
    assert 590 <= width_s <= 610
    # An explicit resolution reads that rollup tier.
    with page.expect_response(lambda r: "resolution=1m" in r.url):
        page.select_option("#resolution", "1m")
    expect(chart).to_have_attribute("data-resolution", "1m")
    page.select_option("#resolution", "auto")
    _goto(page, "#/device/home-1-main")
    page.wait_for_function("document.getElementById('history-chart').dataset.points > 2", timeout=15_000)
    _screenshot(page, system, "device.png")
    _clean(recorder)


def test_devices_page_lists_every_device(desktop: tuple[Page, Recorder], system: System) -> None:
    page, recorder = desktop
    _goto(page, "#/devices")
    rows = page.locator("#device-table tbody tr")
    expect(rows.first).to_be_visible()
    assert rows.count() >= 6
    expect(page.locator("tr[data-device=home-2-plug-1]")).to_contain_text("online")
    page.locator("tr[data-device=home-2-main] a").click()
    expect(page.locator("main[data-page=device][data-ready=true]")).to_be_attached(timeout=15_000)
    expect(page.locator("h1")).to_have_text("home-2-main")
    _goto(page, "#/devices")
    _screenshot(page, system, "devices.png")
    _clean(recorder)


def test_phone_overview_fits_the_screen(browser: Browser, system: System) -> None:
    page, recorder = _open(browser, system, PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        page.wait_for_function("document.querySelector('#live-power').dataset.updates > 0", timeout=15_000)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone"
        _screenshot(page, system, "overview-phone.png")
        for route in ("#/alerts", "#/devices", "#/device/home-1-main"):
            _goto(page, route)
            assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0, route
        _clean(recorder)
    finally:
        page.context.close()


def test_api_docs_page_works_offline(browser: Browser, system: System) -> None:
    """``/docs`` (advertised by ``vatio up``) draws Swagger UI from files this server sends itself."""
    context = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    recorder = Recorder()
    recorder.attach(page)
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(request.url.split("/")[2]))
    try:
        page.goto(system.url + "/docs")
        expect(page.locator(".swagger-ui .opblock").first).to_be_visible(timeout=15_000)
        assert page.locator(".swagger-ui .opblock").count() > 20
        assert hosts == {system.url.split("/")[2]}
        _clean(recorder)
    finally:
        context.close()
