"""What both browser test modules share: Debian's chromium (launched for a fixture) and a
recorder of what went wrong in a page."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, WebSocket, sync_playwright

CHROMIUM = "/usr/bin/chromium"
#: Where browser tests keep their screenshots and logs for CI to collect (gitignored);
#: ``VATIO_TEST_ARTIFACTS`` moves it.
ARTIFACTS = Path(os.environ.get("VATIO_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


def artifacts_dir(name: str) -> Path:
    """``ARTIFACTS/name``, emptied: this run's files only."""
    path = ARTIFACTS / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


#: Without the background-networking flags chromium keeps dialling Google, which this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@dataclass
class Recorder:
    """What went wrong in a page: console errors, page errors, failed requests, HTTP errors."""

    problems: list[str] = field(default_factory=list)
    #: Frames received per WebSocket URL.
    frames: dict[str, int] = field(default_factory=dict)

    def attach(self, page: Page) -> None:
        page.on("console", self.console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("requestfailed", self.failed)
        page.on("response", self.response)
        page.on("websocket", self.websocket)

    def websocket(self, socket: WebSocket) -> None:
        self.frames.setdefault(socket.url, 0)

        def received(_: object) -> None:
            self.frames[socket.url] += 1

        socket.on("framereceived", received)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text} at {message.location}")

    def failed(self, request: Request) -> None:
        self.problems.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")


def launch_chromium() -> Iterator[Browser]:
    """Debian's chromium for the length of a fixture (``yield from launch_chromium()``)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)", pytrace=False)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
