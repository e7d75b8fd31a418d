"""What every PostgreSQL module of the store shares: the reading columns and the error translation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from vatio.errors import StoreUnavailableError
from vatio.model import Reading

#: The readings table's columns: a stored row is a ``Reading`` (``Reading(*row)``).
READING_COLUMNS: tuple[str, ...] = Reading._fields
COLS = ", ".join(READING_COLUMNS)

#: Errors after which the same call may succeed: connection trouble, a server
#: restarting or overloaded, a deadlock or serialization failure.
RETRYABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.TransactionRollbackError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)


@contextlib.asynccontextmanager
async def unavailable_as_error() -> AsyncIterator[None]:
    try:
        yield
    except RETRYABLE as exc:
        raise StoreUnavailableError(f"PostgreSQL unavailable: {exc}") from exc
