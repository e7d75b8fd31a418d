"""Liveness and store counts."""

from __future__ import annotations

from fastapi import APIRouter

from vatio import __version__
from vatio.api.deps import StoreDep
from vatio.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health(store: StoreDep) -> Health:
    stats = await store.stats()
    return Health(
        status="ok",
        version=__version__,
        store=store.url.split(":", 1)[0],
        readings=stats.readings,
        devices=stats.devices,
        dead_letters=stats.dead_letters,
        pending_rollups=stats.pending_rollups,
    )
