"""The rules an anomaly episode goes through to become a notification.

Defaults are what a household wants: critical faults (over power, counter
trouble, implausible values) notify at once; anything else must last
``pending_for`` first; a flapping condition notifies once (``resolve_hold``
hysteresis, then ``cooldown`` after a resolve); quiet hours defer non-critical
notifications to their end, never drop them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vatio.errors import ConfigError
from vatio.model import Severity

#: Severity of each kind the detectors emit; unknown kinds are warnings.
DEFAULT_SEVERITY: Mapping[str, Severity] = MappingProxyType(
    {
        "over_power": Severity.CRITICAL,
        "counter_reset": Severity.CRITICAL,
        "counter_jump": Severity.CRITICAL,
        "implausible": Severity.CRITICAL,
        "tamper": Severity.CRITICAL,
        "hvac_runaway": Severity.CRITICAL,
        "gap": Severity.WARNING,
        "stuck": Severity.WARNING,
        "clock_skew": Severity.WARNING,
        "voltage_sag": Severity.WARNING,
        "voltage_swell": Severity.WARNING,
        "frequency": Severity.WARNING,
        "unusual_consumption": Severity.WARNING,
        "left_on": Severity.WARNING,
        "baseload_increase": Severity.WARNING,
        "night_use": Severity.INFO,
        "vacancy": Severity.INFO,
        "duplicate_seq": Severity.INFO,
        "seq_out_of_order": Severity.INFO,
    }
)
_UP = {Severity.INFO: Severity.WARNING, Severity.WARNING: Severity.CRITICAL, Severity.CRITICAL: Severity.CRITICAL}


@dataclass(frozen=True, slots=True, kw_only=True)
class QuietHours:
    """A daily window (local time in ``tz``) in which non-critical notifications wait.

    >>> q = QuietHours(start=time(22), end=time(7), tz="UTC")
    >>> q.deferral(datetime(2026, 1, 1, 23, 30, tzinfo=UTC)).isoformat()
    '2026-01-02T07:00:00+00:00'
    >>> q.deferral(datetime(2026, 1, 1, 12, 0, tzinfo=UTC)) is None
    True
    """

    start: time
    end: time
    tz: str = "UTC"

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"unknown time zone {self.tz!r} in quiet hours") from exc

    def deferral(self, at: datetime) -> datetime | None:
        """End of the quiet window ``at`` falls in (UTC), or None when ``at`` is not quiet."""
        local = at.astimezone(ZoneInfo(self.tz))
        now = local.time().replace(tzinfo=None)
        wraps = self.start > self.end  # e.g. 22:00-07:00 spans midnight
        inside = (now >= self.start or now < self.end) if wraps else self.start <= now < self.end
        if not inside:
            return None
        day = local.date() + timedelta(days=1) if wraps and now >= self.start else local.date()
        end = datetime.combine(day, self.end, tzinfo=ZoneInfo(self.tz))
        return end.astimezone(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRules:
    """Timing, severity and quiet hours; ``quiet_hours`` maps a site (or ``*``) to its window."""

    pending_for: timedelta = timedelta(seconds=60)
    pending_for_critical: timedelta = timedelta(0)
    cooldown: timedelta = timedelta(minutes=30)
    resolve_hold: timedelta = timedelta(minutes=5)
    #: An episode that ended longer ago than this when alerting first sees it is recorded as skipped.
    stale_after: timedelta = timedelta(hours=24)
    #: A score this high raises the kind's severity one step.
    escalate_score: float = 10.0
    severity_by_kind: Mapping[str, Severity] = field(default_factory=lambda: DEFAULT_SEVERITY)
    quiet_hours: Mapping[str, QuietHours] = field(default_factory=dict)

    def severity(self, kind: str, score: float) -> Severity:
        """Severity of an episode of ``kind`` with peak ``score``.

        >>> AlertRules().severity("gap", 2.0), AlertRules().severity("gap", 50.0)
        (<Severity.WARNING: 'warning'>, <Severity.CRITICAL: 'critical'>)
        """
        base = self.severity_by_kind.get(kind, Severity.WARNING)
        return _UP[base] if score >= self.escalate_score else base

    def pending_time(self, severity: Severity) -> timedelta:
        return self.pending_for_critical if severity is Severity.CRITICAL else self.pending_for

    def deliver_at(self, site_id: str, severity: Severity, now: datetime) -> datetime:
        """When a notification raised ``now`` may go out: at once, or at the end of quiet hours."""
        quiet = self.quiet_hours.get(site_id) or self.quiet_hours.get("*")
        if quiet is None or severity is Severity.CRITICAL:
            return now
        return quiet.deferral(now) or now


def title(kind: str, device_id: str) -> str:
    """``Over power on plug-7``."""
    return f"{kind.replace('_', ' ').capitalize()} on {device_id}"
