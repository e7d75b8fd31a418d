"""Cursor pagination shared by every list endpoint.

A list answers ``{"items": [...], "next_cursor": "..." | null}``; the client
passes ``next_cursor`` back as ``cursor`` to get the next page. Cursors are
opaque (URL-safe base64 of a small JSON value, usually the sort key of the
last item), so a backend can page by key rather than by offset.

>>> token = encode_cursor({"id": 41})
>>> decode_cursor(token)
{'id': 41}
>>> decode_cursor("not a cursor!")
Traceback (most recent call last):
...
vatio.errors.ConfigError: invalid cursor: pass back the next_cursor of the previous page
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Depends, Query
from pydantic import BaseModel

from vatio.api.schemas import ErrorResponse
from vatio.errors import ConfigError

T = TypeVar("T")

#: Items per page when the client does not say.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


#: The error a list answers for a cursor it did not issue: document it on every paginated route.
PAGE_ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": ErrorResponse, "description": "invalid cursor"}}


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    next_cursor: str | None = None


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(token: str) -> Any:
    try:
        return orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("invalid cursor: pass back the next_cursor of the previous page") from exc


class PageParams(BaseModel):
    limit: int
    cursor: Any | None


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=decode_cursor(cursor) if cursor else None)


PageDep = Annotated[PageParams, Depends(page_params)]
