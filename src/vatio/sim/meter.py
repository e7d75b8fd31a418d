"""A simulated smart meter or plug: plausible load, counters, seq. No I/O.

The realistic appliance-level household model builds on this; here a meter is
a baseload, a fridge compressor cycle and random high-power appliances.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime

from vatio.model import Reading


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterParams:
    """A meter's load model; every value drawn from ``seed`` by :meth:`draw`."""

    baseload_w: float = 120.0
    fridge_w: float = 90.0
    fridge_period_s: float = 2700.0
    fridge_duty: float = 0.35
    appliance_w: float = 2000.0
    appliance_rate_per_h: float = 0.8
    appliance_minutes: float = 6.0
    nominal_v: float = 230.0
    frequency_hz: float = 50.0

    @classmethod
    def draw(cls, seed: int) -> MeterParams:
        rng = random.Random(seed)
        return cls(
            baseload_w=rng.uniform(60, 250),
            fridge_w=rng.uniform(60, 150),
            fridge_period_s=rng.uniform(1800, 3600),
            fridge_duty=rng.uniform(0.25, 0.5),
            appliance_w=rng.choice([1200.0, 2000.0, 2200.0, 3000.0]),
            appliance_rate_per_h=rng.uniform(0.3, 1.5),
            appliance_minutes=rng.uniform(2, 20),
        )


@dataclass(slots=True)
class SimulatedMeter:
    """Produces readings with a growing ``seq`` and a cumulative import counter.

    >>> from datetime import UTC, datetime, timedelta
    >>> meter = SimulatedMeter("plug-1", "home-1", seed=7)
    >>> t0 = datetime(2026, 11, 24, tzinfo=UTC)
    >>> a, b = meter.read(t0), meter.read(t0 + timedelta(seconds=10))
    >>> b.seq - a.seq, b.energy_wh >= a.energy_wh
    (1, True)
    """

    device_id: str
    site_id: str
    seed: int = 0
    params: MeterParams | None = None
    energy_wh: float = 0.0
    seq: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _appliance_until: float = field(default=0.0, init=False, repr=False)
    _last_ts: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        if self.params is None:
            self.params = MeterParams.draw(self.seed)
        self.energy_wh = self._rng.uniform(1e5, 5e6)

    def power_at(self, t: float) -> float:
        """Instantaneous power at epoch second ``t``."""
        p = self.params
        assert p is not None
        phase = (t % p.fridge_period_s) / p.fridge_period_s
        fridge = p.fridge_w if phase < p.fridge_duty else 0.0
        appliance = p.appliance_w if t < self._appliance_until else 0.0
        return max(0.0, p.baseload_w + fridge + appliance + self._rng.gauss(0.0, 3.0))

    def read(self, ts: datetime) -> Reading:
        """The reading at ``ts``; the counter integrates power since the previous one."""
        p = self.params
        assert p is not None
        t = ts.timestamp()
        dt = 0.0 if self._last_ts is None else max(0.0, t - self._last_ts)
        if t >= self._appliance_until and self._rng.random() < p.appliance_rate_per_h * dt / 3600:
            self._appliance_until = t + p.appliance_minutes * 60
        power = self.power_at(t)
        self.energy_wh += power * dt / 3600.0
        self._last_ts = t
        self.seq += 1
        voltage = p.nominal_v + 3.0 * math.sin(t / 600.0) + self._rng.gauss(0.0, 0.5)
        return Reading(
            device_id=self.device_id,
            ts=ts,
            seq=self.seq,
            power_w=round(power, 2),
            energy_wh=round(self.energy_wh, 3),
            voltage_v=round(voltage, 2),
            current_a=round(power / voltage, 3),
            power_factor=0.95,
            frequency_hz=round(p.frequency_hz + self._rng.gauss(0.0, 0.02), 3),
            energy_export_wh=None,
        )
