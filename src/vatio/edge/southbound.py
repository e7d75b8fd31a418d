"""The edge gateway's southbound receivers: telemetry from meters over CoAP and HTTP.

Meters that speak no MQTT POST a v1 telemetry batch to the gateway:

* CoAP (RFC 7252, UDP): ``POST coap://gateway/t/{site}/{device}``, CBOR
  (Content-Format 60; 50, JSON, is accepted too), confirmable; batches
  larger than a datagram travel block-wise (RFC 7959, Block1).
* HTTP/1.1: ``POST http://gateway/v1/{site}/{device}/telemetry``, JSON
  (``application/cbor`` is accepted too).

A batch is validated as the ingest validates it (:func:`vatio.contracts.decode_telemetry`).
One bad reading refuses the whole batch with 4.00 / 400 and a body naming the
first offending field (``{"error": ..., "field": "readings[3].power_w"}``,
CBOR over CoAP, JSON over HTTP): the device has a bug and should hear of it,
not the dead-letter store. A payload over ``limits.max_payload_bytes`` gets
4.13 / 413 before it is decoded. A valid batch is forwarded byte for byte on
its contract topic at QoS 1, and the device gets 2.04 / 202 only after the
broker's PUBACK: an answered device may forget the readings. While the broker
is unreachable the answer is 5.03 / 503, so the device keeps them and retries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import aiocoap
import aiocoap.error
import aiocoap.resource
import cbor2
import orjson
import uvicorn
from fastapi import FastAPI, Request, Response

from vatio.contracts import Encoding, Limits, decode_telemetry, telemetry_topic
from vatio.errors import ContractError
from vatio.ingest.mqtt_codec import MqttConnectError, MqttError
from vatio.model.instants import utcnow
from vatio.sim.wire import FastPublisher
from vatio.transport import Backoff, BrokerUrl

log = logging.getLogger(__name__)

#: A UDP gateway should not reassemble megabytes per device: 256 KiB is ~2,500 CBOR readings.
SOUTHBOUND_LIMITS: Final = Limits(max_payload_bytes=256 * 1024)
COAP_FORMATS: Final[dict[int | None, Encoding]] = {None: "cbor", 60: "cbor", 50: "json"}
HTTP_TYPES: Final[dict[str, Encoding]] = {"": "json", "application/json": "json", "application/cbor": "cbor"}
# HTTP-style status -> CoAP code; 202 is what a forwarded batch gets.
_COAP_CODES: Final = {
    202: aiocoap.CHANGED, 400: aiocoap.BAD_REQUEST, 413: aiocoap.REQUEST_ENTITY_TOO_LARGE,
    415: aiocoap.UNSUPPORTED_CONTENT_FORMAT, 502: aiocoap.BAD_GATEWAY, 503: aiocoap.SERVICE_UNAVAILABLE,
}  # fmt: skip
Outcome = tuple[int, dict[str, object] | None]


@dataclass(slots=True)
class SouthboundCounters:
    batches: int = 0
    readings: int = 0
    bad_requests: int = 0
    too_large: int = 0
    unavailable: int = 0


class Southbound:
    """CoAP and HTTP telemetry receivers forwarding to the broker: ``async with Southbound(...)``.

    A port of 0 binds a free one (read ``coap_port``/``http_port`` after
    entering); None disables that receiver.
    """

    def __init__(
        self,
        *,
        broker: BrokerUrl,
        host: str = "127.0.0.1",
        coap_port: int | None = 5683,
        http_port: int | None = 8080,
        limits: Limits = SOUTHBOUND_LIMITS,
        client_id: str = "vatio-edge-southbound",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.broker, self.host, self.coap_port, self.http_port = broker, host, coap_port, http_port
        self.limits, self.client_id, self.clock = limits, client_id, clock
        self.counters = SouthboundCounters()
        self.uplink_ready = asyncio.Event()
        self._publisher: FastPublisher | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Southbound:
        async with contextlib.AsyncExitStack() as stack:
            uplink = asyncio.create_task(self._uplink(), name="southbound-uplink")
            stack.push_async_callback(_cancel, uplink)
            if self.coap_port is not None:
                site = aiocoap.resource.Site()
                site.add_resource(["t"], _TelemetryResource(self))
                bind = (self.host, self.coap_port)
                coap = await aiocoap.Context.create_server_context(site, bind=bind, transports=["udp6"])
                stack.push_async_callback(coap.shutdown)
                self.coap_port = _coap_bound_port(coap)
            if self.http_port is not None:
                self.http_port = await self._start_http(stack)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._stack.aclose()

    async def _start_http(self, stack: contextlib.AsyncExitStack) -> int:
        assert self.http_port is not None
        config = uvicorn.Config(
            _http_app(self), host=self.host, port=self.http_port, log_config=None,
            log_level="warning", access_log=False, lifespan="off",
        )  # fmt: skip
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(), name="southbound-http")

        async def stop() -> None:
            server.should_exit = True
            await task

        stack.push_async_callback(stop)
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()  # raises why uvicorn could not start
                    raise OSError(f"HTTP server on {self.host}:{self.http_port} did not start")
                await asyncio.sleep(0.01)
        port: int = server.servers[0].sockets[0].getsockname()[1]
        return port

    async def _uplink(self) -> None:
        """Keep one MQTT connection to the broker, forever."""
        backoff, broker = Backoff(), self.broker
        while True:
            publisher = FastPublisher(
                host=broker.host, port=broker.port, client_id=self.client_id, window=1000,
                keepalive_s=30, username=broker.username, password=broker.password, ssl=broker.ssl_context(),
            )  # fmt: skip
            try:
                await publisher.connect()
            except (MqttError, OSError) as exc:
                log.warning("southbound cannot reach the broker %s: %s", broker, exc)
            else:
                self._publisher = publisher
                self.uplink_ready.set()
                backoff.reset()
                try:
                    await publisher.wait_closed()
                finally:
                    self._publisher = None
                    self.uplink_ready.clear()
                    publisher.close()
                log.warning("southbound lost the broker: %s", publisher.lost)
            await asyncio.sleep(backoff.next())

    async def forward(self, site: str, device: str, encoding: Encoding, payload: bytes) -> Outcome:
        """Validate one batch and publish it; the answer as an HTTP-style status and error body."""
        if len(payload) > self.limits.max_payload_bytes:
            self.counters.too_large += 1
            return 413, _error(f"payload exceeds {self.limits.max_payload_bytes} bytes", None)
        try:
            topic = telemetry_topic(site, device, encoding)
            batch = decode_telemetry(topic, payload, limits=self.limits, now=self.clock())
        except ContractError as exc:
            self.counters.bad_requests += 1
            return 400, _error(exc.reason, exc.field)
        if batch.rejected:
            self.counters.bad_requests += 1
            first = batch.rejected[0]
            return 400, {**_error(first.reason, first.field), "rejected": len(batch.rejected)}
        publisher = self._publisher
        try:
            if publisher is None:
                raise MqttError("no broker connection")
            await publisher.publish_confirmed(topic, payload)
        except MqttConnectError as exc:
            return 502, _error(f"the broker refused the batch: {exc}", None)
        except MqttError as exc:
            self.counters.unavailable += 1
            return 503, _error(f"broker unavailable: {exc}", None)
        self.counters.batches += 1
        self.counters.readings += len(batch.readings)
        return 202, None


def _error(reason: str, field: str | None) -> dict[str, object]:
    return {"error": reason, "field": field}


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _coap_bound_port(context: Any) -> int:
    """The UDP port aiocoap bound (it has no public accessor; needed when asked for port 0)."""
    endpoint = context.request_interfaces[0].token_interface.message_interface
    port: int = endpoint.transport.get_extra_info("socket").getsockname()[1]
    return port


class _TelemetryResource(aiocoap.resource.Resource, aiocoap.resource.PathCapable):  # type: ignore[misc]
    """``/t/{site}/{device}``: the path below ``/t`` is parsed here, not by the Site."""

    def __init__(self, southbound: Southbound) -> None:
        super().__init__()
        self.southbound = southbound

    async def needs_blockwise_assembly(self, request: aiocoap.Message) -> bool:
        # Refuse an oversize Block1 transfer at its first block, before reassembling it.
        limit = self.southbound.limits.max_payload_bytes
        block1 = request.opt.block1
        if (request.opt.size1 or 0) > limit or (block1 and block1.start + len(request.payload) > limit):
            self.southbound.counters.too_large += 1
            raise _CoapError(413, _error(f"payload exceeds {limit} bytes", None), size1=limit)
        return True

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        path = request.opt.uri_path
        if len(path) != 2:
            raise _CoapError(400, _error("expected /t/{site}/{device}", "path"))
        encoding = COAP_FORMATS.get(request.opt.content_format)
        if encoding is None:
            raise _CoapError(415, _error("send CBOR (60) or JSON (50)", "content_format"))
        status, body = await self.southbound.forward(path[0], path[1], encoding, request.payload)
        if body is not None:
            raise _CoapError(status, body, size1=self.southbound.limits.max_payload_bytes)
        return aiocoap.Message(code=aiocoap.CHANGED)


class _CoapError(aiocoap.error.RenderableError):  # type: ignore[misc]
    def __init__(self, status: int, body: dict[str, object], *, size1: int | None = None) -> None:
        super().__init__(body["error"])
        self.status, self.body, self.size1 = status, body, size1

    def to_message(self) -> aiocoap.Message:
        message = aiocoap.Message(code=_COAP_CODES[self.status], payload=cbor2.dumps(self.body))
        message.opt.content_format = 60
        if self.status == 413:
            message.opt.size1 = self.size1  # RFC 7959 §4: the largest body we accept
        elif self.status == 503:
            message.opt.max_age = 5  # RFC 7252 §5.9.3.4: retry after this many seconds
        return message


def _http_app(southbound: Southbound) -> FastAPI:
    app = FastAPI(title="vatio edge southbound", openapi_url=None)
    limit = southbound.limits.max_payload_bytes

    @app.post("/v1/{site}/{device}/telemetry")
    async def telemetry(site: str, device: str, request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        encoding = HTTP_TYPES.get(content_type)
        if encoding is None:
            return _json(415, _error("send application/json or application/cbor", "content-type"))
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            southbound.counters.too_large += 1
            return _json(413, _error(f"payload exceeds {limit} bytes", None))
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:  # chunked uploads declare no length
                southbound.counters.too_large += 1
                return _json(413, _error(f"payload exceeds {limit} bytes", None))
        status, error = await southbound.forward(site, device, encoding, bytes(body))
        return _json(status, error)

    return app


def _json(status: int, body: dict[str, object] | None) -> Response:
    content = b"" if body is None else orjson.dumps(body)
    headers = {"retry-after": "5"} if status == 503 else None
    return Response(content, status_code=status, media_type="application/json", headers=headers)


# -- the device side: clients for the simulator and tests -----------------------------------
Sender = Callable[[str, str, bytes], Awaitable[int]]


@contextlib.asynccontextmanager
async def coap_sender(edge: str, encoding: Encoding, *, endpoints: int = 16) -> AsyncIterator[Sender]:
    """POST batches to a CoAP receiver: yields ``send(site, device, payload) -> status`` (2.04 -> 204).

    CoAP allows one outstanding confirmable request between two endpoints
    (NSTART = 1, RFC 7252 §4.7), so devices are spread over ``endpoints``
    client sockets, as real devices each have an address of their own.
    Transport failures raise ``ConnectionError``.
    """
    content_format = 60 if encoding == "cbor" else 50
    base = edge.rstrip("/")
    contexts: list[Any] = []
    try:
        for _ in range(endpoints):
            contexts.append(await aiocoap.Context.create_client_context(transports=["udp6"]))

        async def send(site: str, device: str, payload: bytes) -> int:
            context = contexts[zlib.crc32(device.encode()) % len(contexts)]
            request = aiocoap.Message(
                code=aiocoap.POST, uri=f"{base}/t/{site}/{device}", payload=payload, content_format=content_format
            )
            try:
                response = await context.request(request).response
            except aiocoap.error.Error as exc:
                raise ConnectionError(f"CoAP request failed: {exc}") from exc
            code = int(response.code)  # class in the top 3 bits, detail in the low 5 (RFC 7252 §3)
            return (code >> 5) * 100 + (code & 0x1F)

        yield send
    finally:
        for context in contexts:
            await context.shutdown()


@contextlib.asynccontextmanager
async def http_sender(edge: str, encoding: Encoding, *, connections: int = 100) -> AsyncIterator[Sender]:
    """POST batches to an HTTP receiver over a keep-alive pool: yields ``send(...) -> status``."""
    try:
        import httpx
    except ImportError as exc:  # a dev extra today, like the other client-side tools
        raise ImportError("the HTTP device transport needs httpx: pip install 'vatio[dev]'") from exc
    headers = {"content-type": "application/cbor" if encoding == "cbor" else "application/json"}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=edge, limits=limits, timeout=10.0, headers=headers) as client:

        async def send(site: str, device: str, payload: bytes) -> int:
            try:
                response = await client.post(f"/v1/{site}/{device}/telemetry", content=payload)
            except httpx.HTTPError as exc:
                raise ConnectionError(f"HTTP request failed: {exc!r}") from exc
            return response.status_code

        yield send


# -- `vatio edge southbound` ----------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run the receivers until SIGINT/SIGTERM; prints the bound ports as one JSON line."""
    parser = argparse.ArgumentParser(prog="vatio edge southbound", description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True, help="mqtt://host:port the batches are forwarded to")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--coap-port", type=int, default=5683, help="0: a free port; -1: no CoAP")
    parser.add_argument("--http-port", type=int, default=8080, help="0: a free port; -1: no HTTP")
    parser.add_argument("--max-payload", type=int, default=SOUTHBOUND_LIMITS.max_payload_bytes)
    parser.add_argument("--client-id", default="vatio-edge-southbound")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    asyncio.run(_serve(args))
    return 0


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    southbound = Southbound(
        broker=BrokerUrl.parse(args.broker),
        host=args.host,
        coap_port=None if args.coap_port < 0 else args.coap_port,
        http_port=None if args.http_port < 0 else args.http_port,
        limits=Limits(max_payload_bytes=args.max_payload),
        client_id=args.client_id,
    )
    async with southbound:
        ports = {"coap_port": southbound.coap_port, "http_port": southbound.http_port}
        print(json.dumps({"southbound": ports}), flush=True)
        await stop.wait()
    print(json.dumps({"southbound": _counters(southbound)}), flush=True)


def _counters(southbound: Southbound) -> dict[str, int]:
    counters = southbound.counters
    return {name: getattr(counters, name) for name in counters.__slots__}


if __name__ == "__main__":
    sys.exit(main())
