"""Storage: one :class:`Store` protocol, SQLite and PostgreSQL backends."""

from __future__ import annotations

from vatio.errors import StoreError
from vatio.store.base import ONLINE_WINDOW, RetentionResult, Store, redact, write_all


def open_store(url: str) -> Store:
    """The backend a database URL selects.

    >>> open_store("sqlite:///:memory:").url
    'sqlite:///:memory:'
    >>> open_store("mysql://x")
    Traceback (most recent call last):
    ...
    vatio.errors.StoreError: unsupported database URL 'mysql://x': use sqlite:///path or postgresql://...
    """
    if url.startswith("sqlite:"):
        from vatio.store.sqlite import SqliteStore

        return SqliteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from vatio.store.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://...")


__all__ = ["ONLINE_WINDOW", "RetentionResult", "Store", "open_store", "redact", "write_all"]
