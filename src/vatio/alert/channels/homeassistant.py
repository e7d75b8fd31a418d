"""Home Assistant MQTT discovery: Vatio's devices appear in Home Assistant without configuration.

Per device, three retained config messages under the discovery prefix:

* ``homeassistant/binary_sensor/vatio_<device>/anomaly/config`` (device_class problem),
* ``homeassistant/sensor/vatio_<device>/power/config`` (W, measurement),
* ``homeassistant/sensor/vatio_<device>/energy/config`` (kWh, total_increasing),

all reading one retained JSON state topic, ``vatio/ha/{site}/{device}/state``
(``{"power_w", "energy_kwh", "anomaly": "ON"|"OFF"}``), which this stage
republishes when it changes; availability comes from the device's own
retained ``vatio/v1/{site}/{device}/status``.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import orjson

from vatio.alert.channels.base import DeliveryError
from vatio.alert.channels.mqtt import MqttLink
from vatio.contracts import status_topic
from vatio.errors import StoreError
from vatio.model import AlertState, Device
from vatio.model.instants import utcnow
from vatio.store import ONLINE_WINDOW, Store
from vatio.transport import Backoff

log = logging.getLogger(__name__)

PREFIX = "homeassistant"


def state_topic(site: str, device: str) -> str:
    return f"vatio/ha/{site}/{device}/state"


def discovery_configs(site: str, device: str, *, prefix: str = PREFIX) -> dict[str, dict[str, Any]]:
    """Topic → config payload of the three entities of one device.

    >>> sorted(discovery_configs("home-1", "plug-7"))[0]
    'homeassistant/binary_sensor/vatio_plug-7/anomaly/config'
    """
    node = f"vatio_{device}"
    common = {
        "state_topic": state_topic(site, device),
        "availability_topic": status_topic(site, device),
        "availability_template": "{{ 'online' if value_json.online else 'offline' }}",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [node], "name": f"Vatio {device}", "manufacturer": "Vatio", "model": "metered device",
            "suggested_area": site,
        },
        "origin": {"name": "Vatio"},
    }  # fmt: skip
    return {
        f"{prefix}/binary_sensor/{node}/anomaly/config": {
            **common, "name": "Anomaly", "unique_id": f"{node}_anomaly", "device_class": "problem",
            "value_template": "{{ value_json.anomaly }}", "payload_on": "ON", "payload_off": "OFF",
        },
        f"{prefix}/sensor/{node}/power/config": {
            **common, "name": "Power", "unique_id": f"{node}_power", "device_class": "power",
            "unit_of_measurement": "W", "state_class": "measurement", "value_template": "{{ value_json.power_w }}",
        },
        f"{prefix}/sensor/{node}/energy/config": {
            **common, "name": "Energy", "unique_id": f"{node}_energy", "device_class": "energy",
            "unit_of_measurement": "kWh", "state_class": "total_increasing",
            "value_template": "{{ value_json.energy_kwh }}",
        },
    }  # fmt: skip


class HomeAssistantSync:
    """Announces every known device once per connection and keeps its state topic current."""

    def __init__(self, *, store: Store, link: MqttLink, interval_s: float = 30.0, prefix: str = PREFIX) -> None:
        self.store = store
        self.link = link
        self.interval_s = interval_s
        self.prefix = prefix
        self._announced: set[str] = set()
        self._states: dict[str, bytes] = {}
        self._connection = -1

    async def sync_once(self) -> int:
        """Publish what changed; returns how many messages went out."""
        if self.link.connections != self._connection:
            # A new connection may be a restarted broker that lost its retained messages.
            self._announced.clear()
            self._states.clear()
        problems = {
            a.device_id
            for a in await self.store.alerts(states=[AlertState.FIRING, AlertState.ACKNOWLEDGED], limit=10_000)
        }
        sent = 0
        for device in await self.store.list_devices():
            sent += await self._sync_device(device, device.device_id in problems)
        self._connection = self.link.connections  # a failed publish skips this: the next pass re-announces
        return sent

    async def _sync_device(self, device: Device, problem: bool) -> int:
        sent = 0
        if device.device_id not in self._announced:
            for topic, config in discovery_configs(device.site_id, device.device_id, prefix=self.prefix).items():
                await self.link.publish(topic, orjson.dumps(config), retain=True)
                sent += 1
            self._announced.add(device.device_id)
        state = orjson.dumps({**await self._latest(device), "anomaly": "ON" if problem else "OFF"})
        if self._states.get(device.device_id) != state:
            await self.link.publish(state_topic(device.site_id, device.device_id), state, retain=True)
            self._states[device.device_id] = state
            sent += 1
        return sent

    async def _latest(self, device: Device) -> dict[str, float | None]:
        end = utcnow() + timedelta(seconds=1)
        readings = await self.store.readings(device.device_id, end - ONLINE_WINDOW, end)
        power = next((r.power_w for r in reversed(readings) if r.power_w is not None), None)
        energy = next((r.energy_wh for r in reversed(readings) if r.energy_wh is not None), None)
        return {"power_w": power, "energy_kwh": None if energy is None else round(energy / 1000, 4)}

    async def run(self) -> None:
        backoff = Backoff(initial_s=1.0, cap_s=60.0)
        while True:
            try:
                await self.sync_once()
                backoff.reset()
                delay = self.interval_s
            except (StoreError, DeliveryError) as exc:
                delay = backoff.next()
                log.warning("Home Assistant sync failed (%s); retrying in %.1fs", exc, delay)
            except Exception:  # a driver error no backend translated: log it and go on
                delay = backoff.next()
                log.exception("Home Assistant sync failed; retrying in %.1fs", delay)
            await asyncio.sleep(delay)
