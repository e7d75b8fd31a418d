"""Ground-truth anomaly labels, shared by the injector and the evaluation."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class AnomalyKind(enum.StrEnum):
    """What an injected (or detected) anomaly is."""

    LEFT_ON = "left_on"  # an appliance left on: +0.3-2 kW for 6-72 h
    BASELOAD = "baseload_increase"  # always-on load up: +50-300 W for days
    NIGHT_USE = "night_use"  # unusual use at night
    VACANCY = "vacancy"  # near zero for days in an occupied home
    TAMPER = "tamper"  # consumption scaled by 0.1-0.6, voltage normal
    SPIKE = "spike"  # short implausible peaks
    STUCK = "stuck_meter"  # flat line
    GAP = "gap"  # data missing / meter offline
    COUNTER_RESET = "counter_reset"  # cumulative counter restarts
    CLOCK_SKEW = "clock_skew"  # timestamps shifted
    HVAC_RUNAWAY = "hvac_runaway"  # long high load not following temperature


@dataclass(frozen=True, slots=True, kw_only=True)
class AnomalyLabel:
    """One injected anomaly: what, where, when (``[start, end)``, UTC) and how big.

    ``magnitude`` is in the kind's natural unit (W added for left-on and
    baseload, a factor for tamper, seconds for clock skew...), documented by
    the injector.
    """

    kind: AnomalyKind
    device_id: str
    start: datetime
    end: datetime
    magnitude: float
    detail: str = ""
