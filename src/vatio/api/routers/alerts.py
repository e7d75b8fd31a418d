"""Alerts and mutes: list, inspect (with the audit trail), acknowledge, resolve; mute a device.

Transitions go through :class:`~vatio.alert.lifecycle.AlertEngine`, as the
alert stage's own do: audited with the user as actor, and the notifications
they cause written to the outbox in the same transaction (the alert stage's
delivery worker sends them). Routes come from ``app.state.alert_config`` when
the process set one, else from the file in ``VATIO_ROUTES``, else the defaults.
An invalid transition is a 409.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request, Response
from pydantic import BaseModel, Field

from vatio.alert.lifecycle import AlertEngine
from vatio.alert.routes import AlertConfig, load_config
from vatio.api.deps import StoreDep
from vatio.api.pagination import PAGE_ERRORS, Page, PageDep, encode_cursor
from vatio.api.schemas import TEXT_PATTERN, ErrorResponse
from vatio.errors import ConfigError, NotFoundError
from vatio.model import Alert, AlertState, AuditEntry, Mute, Severity
from vatio.model.instants import utcnow

router = APIRouter(prefix="/api/v1", tags=["alerts"])

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_ID = 2**63 - 1
AlertId = Annotated[int, Path(ge=1, le=MAX_ID, description="alert id")]
MuteId = Annotated[int, Path(ge=1, le=MAX_ID, description="mute id")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "no such alert"},
    409: {"model": ErrorResponse, "description": "the alert's state does not allow this transition"},
}


class AlertPublic(BaseModel):
    id: int
    site: str
    device: str
    kind: str
    severity: Severity
    state: AlertState
    title: str
    explanation: str
    anomaly_id: int = Field(description="the newest anomaly episode of this alert")
    opened_at: datetime
    updated_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    acknowledged_by: str | None
    muted: bool = Field(description="recorded while a mute covered it: not delivered")

    @classmethod
    def of(cls, a: Alert) -> AlertPublic:
        assert a.id is not None
        return cls(
            id=a.id, site=a.site_id, device=a.device_id, kind=a.kind, severity=a.severity, state=a.state,
            title=a.title, explanation=a.explanation, anomaly_id=a.anomaly_id, opened_at=a.opened_at,
            updated_at=a.updated_at, acknowledged_at=a.acknowledged_at, resolved_at=a.resolved_at,
            acknowledged_by=a.acknowledged_by, muted=a.muted,
        )  # fmt: skip


class AuditPublic(BaseModel):
    at: datetime
    actor: str = Field(description='"system" or the user')
    from_state: AlertState | None
    to_state: AlertState
    reason: str

    @classmethod
    def of(cls, e: AuditEntry) -> AuditPublic:
        return cls(at=e.at, actor=e.actor, from_state=e.from_state, to_state=e.to_state, reason=e.reason)


class AlertDetail(AlertPublic):
    audit: list[AuditPublic]


class TransitionBody(BaseModel):
    by: str = Field(
        min_length=1, max_length=200, pattern=TEXT_PATTERN, description="who acts (shown in the audit trail)"
    )
    note: str | None = Field(default=None, max_length=2000, pattern=TEXT_PATTERN)


class MuteCreate(BaseModel):
    device: str = Field(pattern=ID_PATTERN)
    kind: str | None = Field(default=None, pattern=ID_PATTERN, description="null: every kind")
    until: datetime = Field(description="ISO 8601; naive times are UTC")
    by: str = Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)
    reason: str | None = Field(default=None, max_length=2000, pattern=TEXT_PATTERN)


class MutePublic(BaseModel):
    id: int
    device: str
    kind: str | None
    until: datetime
    by: str
    reason: str | None
    created_at: datetime

    @classmethod
    def of(cls, m: Mute) -> MutePublic:
        assert m.id is not None
        return cls(
            id=m.id, device=m.device_id, kind=m.kind, until=m.until, by=m.by, reason=m.reason, created_at=m.created_at
        )


def _config(request: Request) -> AlertConfig:
    config: AlertConfig | None = getattr(request.app.state, "alert_config", None)
    if config is None:
        config = load_config(os.environ.get("VATIO_ROUTES"))
        request.app.state.alert_config = config
    return config


def _before(cursor: Any) -> int | None:
    if cursor is None:
        return None
    if not (isinstance(cursor, dict) and type(cursor.get("before")) is int and 0 < cursor["before"] <= MAX_ID):
        raise ConfigError("invalid cursor: pass back the next_cursor of the previous page")
    return int(cursor["before"])


@router.get("/alerts", response_model=Page[AlertPublic], responses=PAGE_ERRORS)
async def list_alerts(
    store: StoreDep,
    page: PageDep,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    device: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    state: AlertState | None = None,
    kind: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    severity: Severity | None = None,
) -> Page[AlertPublic]:
    """Alerts, newest first."""
    rows = await store.alerts(
        site_id=site, device_id=device, kind=kind, states=None if state is None else [state], severity=severity,
        before_id=_before(page.cursor), limit=page.limit + 1,
    )  # fmt: skip
    items = rows[: page.limit]
    more = len(rows) > page.limit and items
    return Page[AlertPublic](
        items=[AlertPublic.of(a) for a in items], next_cursor=encode_cursor({"before": items[-1].id}) if more else None
    )


@router.get("/alerts/{alert_id}", response_model=AlertDetail, responses=_ERRORS)
async def get_alert(alert_id: AlertId, store: StoreDep) -> AlertDetail:
    alert = await store.get_alert(alert_id)
    if alert is None:
        raise NotFoundError("alert", str(alert_id))
    audit = [AuditPublic.of(e) for e in await store.alert_audit(alert_id)]
    return AlertDetail(**AlertPublic.of(alert).model_dump(), audit=audit)


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertPublic, responses=_ERRORS)
async def acknowledge(alert_id: AlertId, body: TransitionBody, store: StoreDep, request: Request) -> AlertPublic:
    engine = AlertEngine(store=store, config=_config(request))
    return AlertPublic.of(await engine.acknowledge(alert_id, by=body.by, note=body.note))


@router.post("/alerts/{alert_id}/resolve", response_model=AlertPublic, responses=_ERRORS)
async def resolve(alert_id: AlertId, body: TransitionBody, store: StoreDep, request: Request) -> AlertPublic:
    engine = AlertEngine(store=store, config=_config(request))
    return AlertPublic.of(await engine.resolve(alert_id, by=body.by, note=body.note))


@router.get("/mutes", response_model=Page[MutePublic], responses=PAGE_ERRORS)
async def list_mutes(
    store: StoreDep,
    page: PageDep,
    expired: Annotated[bool, Query(description="include mutes that have run out")] = False,
) -> Page[MutePublic]:
    """Mutes, oldest first; only those still in force unless ``expired=true``."""
    mutes = await store.mutes(active_at=None if expired else utcnow())
    after = page.cursor.get("after") if isinstance(page.cursor, dict) else None
    if page.cursor is not None and type(after) is not int:
        raise ConfigError("invalid cursor: pass back the next_cursor of the previous page")
    rows = [m for m in mutes if after is None or (m.id or 0) > after]
    items = rows[: page.limit]
    more = len(rows) > page.limit and items
    return Page[MutePublic](
        items=[MutePublic.of(m) for m in items], next_cursor=encode_cursor({"after": items[-1].id}) if more else None
    )


@router.post("/mutes", response_model=MutePublic, status_code=201, responses={400: {"model": ErrorResponse}})
async def create_mute(body: Annotated[MuteCreate, Body()], store: StoreDep) -> MutePublic:
    """Silence a device (one kind, or all) until ``until``: its alerts are recorded and audited, not delivered."""
    try:
        until = body.until.astimezone(UTC) if body.until.tzinfo else body.until.replace(tzinfo=UTC)
    except OverflowError as exc:
        raise ConfigError("until is out of range") from exc
    now = utcnow()
    if until <= now:
        raise ConfigError("until must be in the future")
    mute = Mute(device_id=body.device, kind=body.kind, until=until, by=body.by, reason=body.reason, created_at=now)
    return MutePublic.of(await store.add_mute(mute))


@router.delete("/mutes/{mute_id}", status_code=204, responses={404: {"model": ErrorResponse}})
async def delete_mute(mute_id: MuteId, store: StoreDep) -> Response:
    await store.delete_mute(mute_id)
    return Response(status_code=204)
