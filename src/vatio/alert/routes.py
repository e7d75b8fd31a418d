"""Per-household routing of notifications, and the TOML file that configures alerting.

A routes file (``vatio alert --routes FILE``)::

    [rules]                      # all optional; seconds
    pending_for = 60
    cooldown = 1800
    resolve_hold = 300

    [quiet_hours."*"]            # or a site id
    start = "22:00"
    end = "07:00"
    tz = "Europe/Madrid"

    [[routes]]
    name = "family-webhook"      # unique; outbox rows refer to it
    site = "home-1"              # or "*" for every site
    channel = "webhook"          # webhook | email | mqtt
    min_severity = "warning"     # optional
    url = "https://example.org/hook"
    secret = "a long random string"

Unless the file says ``defaults = false``, every site also gets the ``mqtt``
route: alert events on ``vatio/v1/{site}/alerts``. A route of the file's named
``mqtt`` replaces that default (its ``site`` then decides who gets MQTT events).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Any

from vatio.alert.rules import AlertRules, QuietHours
from vatio.errors import ConfigError
from vatio.model import Severity

CHANNELS = ("webhook", "email", "mqtt")
_REQUIRED = {"webhook": ("url", "secret"), "email": ("host", "sender", "to"), "mqtt": ()}
_COMMON = {"name", "site", "channel", "min_severity"}
DEFAULT_ROUTES = ({"name": "mqtt", "site": "*", "channel": "mqtt"},)


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Where a site's notifications go: one channel with its settings."""

    name: str
    site: str
    channel: str
    min_severity: Severity = Severity.INFO
    settings: Mapping[str, Any] = field(default_factory=dict)

    def wants(self, site_id: str, severity: Severity) -> bool:
        return self.site in ("*", site_id) and severity.rank >= self.min_severity.rank


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertConfig:
    """Rules and routes; ``AlertConfig()`` is the default (MQTT events only).

    >>> [r.name for r in AlertConfig().routes_for("home-1", Severity.INFO)]
    ['mqtt']
    """

    rules: AlertRules = field(default_factory=AlertRules)
    routes: tuple[Route, ...] = field(default_factory=lambda: tuple(_route(r) for r in DEFAULT_ROUTES))

    def routes_for(self, site_id: str, severity: Severity) -> list[Route]:
        return [r for r in self.routes if r.wants(site_id, severity)]

    def route(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)


def load_config(path: str | Path | None) -> AlertConfig:
    """The configuration in a routes file (None: the defaults); ConfigError when it is invalid."""
    if path is None:
        return AlertConfig()
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read routes file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"routes file {path} is not valid TOML: {exc}") from exc
    return parse_config(data)


def parse_config(data: Mapping[str, Any]) -> AlertConfig:
    entries = list(data.get("routes", []))
    if data.get("defaults", True):
        entries += [r for r in DEFAULT_ROUTES if r["name"] not in {e.get("name") for e in entries}]
    routes = tuple(_route(entry) for entry in entries)
    names = [r.name for r in routes]
    if len(set(names)) != len(names):
        raise ConfigError(f"route names must be unique, got {names}")
    return AlertConfig(rules=_rules(data.get("rules", {}), data.get("quiet_hours", {})), routes=routes)


def _route(entry: Mapping[str, Any]) -> Route:
    if not isinstance(entry, Mapping):
        raise ConfigError("each [[routes]] entry must be a table")
    channel = entry.get("channel")
    name = entry.get("name")
    if channel not in CHANNELS:
        raise ConfigError(f"route {name!r}: channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    if not isinstance(name, str) or not name:
        raise ConfigError("every route needs a name")
    missing = [key for key in _REQUIRED[channel] if not entry.get(key)]
    if missing:
        raise ConfigError(f"route {name!r} ({channel}) needs {', '.join(missing)}")
    try:
        severity = Severity(entry.get("min_severity", "info"))
    except ValueError as exc:
        raise ConfigError(f"route {name!r}: min_severity must be info, warning or critical") from exc
    settings = {k: v for k, v in entry.items() if k not in _COMMON}
    return Route(name=name, site=str(entry.get("site", "*")), channel=channel, min_severity=severity, settings=settings)


def _rules(rules: Mapping[str, Any], quiet: Mapping[str, Any]) -> AlertRules:
    seconds = ("pending_for", "pending_for_critical", "cooldown", "resolve_hold", "stale_after")
    unknown = set(rules) - {*seconds, "escalate_score"}
    if unknown:
        raise ConfigError(f"unknown [rules] settings: {', '.join(sorted(unknown))}")
    try:
        values: dict[str, Any] = {k: timedelta(seconds=float(rules[k])) for k in seconds if k in rules}
        if "escalate_score" in rules:
            values["escalate_score"] = float(rules["escalate_score"])
        windows = {
            site: QuietHours(
                start=time.fromisoformat(q["start"]), end=time.fromisoformat(q["end"]), tz=q.get("tz", "UTC")
            )
            for site, q in quiet.items()
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"invalid [rules] or [quiet_hours]: {exc!r}") from exc
    if any(v < timedelta(0) for v in values.values() if isinstance(v, timedelta)):
        raise ConfigError("[rules] durations must not be negative")
    return AlertRules(**values, quiet_hours=windows)
