"""A simulated smart meter's registers, its local buffer and its clock. No I/O.

:class:`~vatio.sim.meter.SimulatedMeter` draws the household's load; a
:class:`FleetMeter` turns it into a meter's registers:

* rooftop PV on some homes, so the net power goes negative at noon and a
  cumulative export counter (``energy_export_wh``) grows beside the import one;
* both counters reset now and then (meter exchange, firmware update, a plug
  that lost power and forgot its total): ``energy_wh`` and
  ``energy_export_wh`` drop to 0 while ``seq`` keeps growing, because the
  contract makes ``seq`` the dedup and ordering key and the store detects
  counter resets;
* a power factor that follows the load (motors and electronics at low load,
  resistive heating at high load), and a current signed like the power.

The sun follows UTC hours (a home on the prime meridian) with a seasonal
amplitude and a cloud factor that drifts from reading to reading.

:class:`ReadingBuffer` is the meter's memory while it cannot send, and
:class:`SimClock` the time it reads by: real, or simulated and faster.

>>> from datetime import UTC, datetime, timedelta
>>> meter = FleetMeter("m-1", "home-1", seed=3, pv_kw_peak=4.0)
>>> noon = datetime(2026, 6, 21, 12, tzinfo=UTC)
>>> a, b = meter.read(noon), meter.read(noon + timedelta(seconds=10))
>>> b.seq - a.seq, b.power_w < 0, b.energy_export_wh > a.energy_export_wh
(1, True, True)
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from datetime import datetime, timedelta
from typing import Final

from vatio.model import Reading
from vatio.model.instants import to_ms, utcnow
from vatio.sim.meter import SimulatedMeter

YEAR_S: Final = 365.25 * 86400
#: Share of simulated homes with rooftop PV when the seed decides.
PV_SHARE: Final = 0.3


class FleetMeter:
    """A simulated smart meter: import/export counters with resets, V, I, PF, f.

    ``pv_kw_peak`` is the PV system's peak (0: none; None: drawn from ``seed``,
    30 % of homes get 2-6 kWp). ``resets_per_year`` is the rate of counter
    resets; ``resets`` counts the ones that happened.
    """

    __slots__ = ("_cloud", "_last_t", "_rng", "device_id", "energy_export_wh", "energy_wh", "load",
                 "pv_kw_peak", "resets", "resets_per_year", "seed", "site_id")  # fmt: skip

    def __init__(
        self,
        device_id: str,
        site_id: str,
        *,
        seed: int = 0,
        pv_kw_peak: float | None = None,
        resets_per_year: float = 0.5,
    ) -> None:
        self.device_id = device_id
        self.site_id = site_id
        self.seed = seed
        self._rng = random.Random(seed ^ 0x5EED)
        if pv_kw_peak is None:
            pv_kw_peak = self._rng.uniform(2.0, 6.0) if self._rng.random() < PV_SHARE else 0.0
        self.pv_kw_peak = pv_kw_peak
        self.resets_per_year = resets_per_year
        self.resets = 0
        self.load = SimulatedMeter(device_id, site_id, seed=seed)
        self.energy_wh = self.load.energy_wh
        self.energy_export_wh = self._rng.uniform(0.0, 2e6) if pv_kw_peak else 0.0
        self._cloud = 1.0
        self._last_t: float | None = None

    @property
    def seq(self) -> int:
        """The seq of the latest reading (0 before the first)."""
        return self.load.seq

    def pv_w(self, t: float) -> float:
        """PV production at epoch second ``t``."""
        if not self.pv_kw_peak:
            return 0.0
        day_s = t % 86400
        sun = math.sin(math.pi * (day_s - 6 * 3600) / (12 * 3600))
        if sun <= 0:
            return 0.0
        day_of_year = (t % YEAR_S) / 86400
        season = 0.65 + 0.35 * math.cos(2 * math.pi * (day_of_year - 172) / 365.25)
        self._cloud = min(1.0, max(0.2, self._cloud + self._rng.gauss(0.0, 0.03)))
        return self.pv_kw_peak * 1000 * sun * season * self._cloud

    def read(self, ts: datetime) -> Reading:
        """The reading at ``ts``; counters integrate the net power since the previous one."""
        base = self.load.read(ts)
        assert base.power_w is not None
        assert base.voltage_v is not None
        t = ts.timestamp()
        dt = 0.0 if self._last_t is None else max(0.0, t - self._last_t)
        self._last_t = t
        if dt and self._rng.random() < self.resets_per_year * dt / YEAR_S:
            self.energy_wh = self.energy_export_wh = 0.0
            self.resets += 1
        net_w = base.power_w - self.pv_w(t)
        if net_w >= 0:
            self.energy_wh += net_w * dt / 3600
        else:
            self.energy_export_wh -= net_w * dt / 3600
        # Motors and switch-mode supplies dominate at low load, heaters at high load.
        share = min(1.0, base.power_w / 3000)
        power_factor = min(1.0, max(0.5, 0.86 + 0.13 * share + self._rng.gauss(0.0, 0.005)))
        voltage = base.voltage_v + (0.002 * -net_w if net_w < 0 else 0.0)  # export lifts the local voltage
        return Reading(
            device_id=self.device_id,
            ts=ts,
            seq=base.seq,
            power_w=round(net_w, 2),
            energy_wh=round(self.energy_wh, 3),
            voltage_v=round(voltage, 2),
            current_a=round(net_w / (voltage * power_factor), 3),
            power_factor=round(power_factor, 3),
            frequency_hz=base.frequency_hz,
            energy_export_wh=round(self.energy_export_wh, 3) if self.pv_kw_peak else None,
        )


class ReadingBuffer:
    """Readings waiting to be sent, oldest first; bounded like a meter's ring buffer.

    When ``limit`` is reached the oldest reading is dropped (and counted in
    ``dropped``): after a long outage the newest data survives, which is what
    a meter with fixed memory does. ``peak`` is the most ever held.

    >>> from datetime import UTC, datetime
    >>> buffer = ReadingBuffer(2)
    >>> for seq in (1, 2, 3):
    ...     _ = buffer.append(Reading("m", datetime(2026, 1, 1, tzinfo=UTC), seq, 1.0))
    >>> [r.seq for r in buffer.take(5)], buffer.dropped
    ([2, 3], 1)
    """

    __slots__ = ("_items", "dropped", "limit", "peak")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0
        self.peak = 0
        self._items: deque[Reading] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def append(self, reading: Reading) -> bool:
        """Queue ``reading``; True if the oldest one had to make room."""
        items = self._items
        items.append(reading)
        self.peak = max(self.peak, len(items))
        if len(items) > self.limit:
            items.popleft()
            self.dropped += 1
            return True
        return False

    def take(self, count: int) -> list[Reading]:
        """Remove and return up to ``count`` readings, oldest first."""
        items = self._items
        return [items.popleft() for _ in range(min(count, len(items)))]

    def put_back(self, readings: list[Reading]) -> int:
        """Return readings that could not be sent to the front; how many were dropped for room."""
        self._items.extendleft(reversed(readings))
        dropped = max(0, len(self._items) - self.limit)
        for _ in range(dropped):
            self._items.popleft()
        self.dropped += dropped
        return dropped


class SimClock:
    """Real time (``speed`` None) or simulated time running ``speed`` times faster from ``start``.

    Simulated time starts a year ago unless ``start`` is given: the ingest
    refuses readings more than a day in the future (``Limits.max_future``).

    >>> from datetime import UTC
    >>> clock = SimClock(speed=3600.0, start=datetime(2025, 1, 1, tzinfo=UTC))
    >>> clock.wall_s(3_600_000)
    1.0
    """

    def __init__(self, *, speed: float | None = None, start: datetime | None = None) -> None:
        self.speed = speed
        self.start = start
        self._wall0 = time.monotonic()
        self._start_ms = to_ms(start or utcnow() - timedelta(days=365))

    def now_ms(self) -> int:
        """Epoch milliseconds on this clock."""
        if self.speed is None:
            return time.time_ns() // 1_000_000
        return self._start_ms + int((time.monotonic() - self._wall0) * self.speed * 1000)

    def wall_s(self, span_ms: int) -> float:
        """Wall seconds that ``span_ms`` of this clock take."""
        return span_ms / 1000 / (self.speed or 1.0)
