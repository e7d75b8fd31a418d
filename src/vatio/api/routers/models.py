"""Trained model versions, and promoting a shadow version to live."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from vatio.api.deps import StoreDep
from vatio.api.pagination import Page, PageDep
from vatio.api.routers.anomalies import ID_PATTERN, MAX_ID, decode_keyset, encode_keyset
from vatio.api.schemas import ErrorResponse, ModelPublic
from vatio.model import ModelStatus

router = APIRouter(prefix="/api/v1/models", tags=["models"])

PROMOTE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "no such model"},
    409: {"model": ErrorResponse, "description": "the model is not in shadow"},
}
BAD_REQUEST: dict[int | str, dict[str, Any]] = {400: {"model": ErrorResponse, "description": "invalid cursor"}}


@router.get("", response_model=Page[ModelPublic], responses=BAD_REQUEST)
async def list_models(
    store: StoreDep,
    page: PageDep,
    device: Annotated[str | None, Query(pattern=r"^(\*|[A-Za-z0-9_-]{1,64})$", description="device id or `*`")] = None,
    detector: Annotated[str | None, Query(pattern=ID_PATTERN, description="detector name")] = None,
) -> Page[ModelPublic]:
    """Model versions, newest first."""
    # A handful of versions per device and detector: paging the listing in memory is cheap,
    # and by key (created_at, id) it stays stable while new versions are trained.
    models = await store.models(detector=detector, device_id=device)
    if page.cursor is not None:
        after = decode_keyset(page.cursor)
        models = [m for m in models if m.id is not None and (m.created_at, m.id) < after]
    items = models[: page.limit]
    last = items[-1] if items else None
    more = len(models) > page.limit and last is not None and last.id is not None
    return Page[ModelPublic](
        items=[ModelPublic.of(m) for m in items],
        next_cursor=encode_keyset(last.created_at, last.id) if more and last and last.id else None,
    )


@router.post("/{model_id}/promote", response_model=ModelPublic, responses=PROMOTE_ERRORS)
async def promote(
    model_id: Annotated[int, Path(ge=1, le=MAX_ID, description="model id")], store: StoreDep
) -> ModelPublic:
    """Make a shadow version live; the previous live version of its detector and device retires."""
    model = await store.set_model_status(model_id, ModelStatus.LIVE, expect=ModelStatus.SHADOW)
    return ModelPublic.of(model)
