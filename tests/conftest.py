"""Shared fixtures: a ``store`` for every backend, and throwaway PostgreSQL databases.

The contract suite runs every store test against both backends. PostgreSQL is
not optional: when the server is unreachable or ``vatio.store.postgres`` is
missing, the ``postgres`` variant fails with the reason instead of skipping,
so CI cannot go green on SQLite alone.

PostgreSQL isolation: one fresh database per test session (``pg_url``), its
schemas dropped and re-migrated before each test that takes ``store``; tests
that need more stores get further fresh databases from ``pg_databases``.
Every database this session creates is dropped at its end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from vatio.store.base import Store
from vatio.testing import PG_ADMIN_URL, create_database, drop_database, mosquitto, run_in_thread

T = TypeVar("T")

PG_DATABASE_PREFIX = "vatio_test"

BACKENDS = ("sqlite", "postgres")

StoreFactory = Callable[[], Awaitable[Store]]

_RESET_SCHEMAS = """
DO $$
DECLARE schema_name text;
BEGIN
    FOR schema_name IN
        SELECT nspname FROM pg_namespace
        WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
    LOOP
        EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
    END LOOP;
    CREATE SCHEMA public;
END $$;
"""


class PgDatabases:
    """Creates fresh PostgreSQL databases (``vatio_test_<hex>``) and drops them all at the end.

    ``await pg_databases.create()`` returns the URL of a brand-new, empty
    database on the server of ``VATIO_PG_ADMIN_URL`` (see :mod:`vatio.testing`).
    """

    def __init__(self) -> None:
        self.created: list[str] = []

    async def create(self) -> str:
        """URL of a new empty database, dropped when the session ends."""
        try:
            url = await create_database(PG_DATABASE_PREFIX)
        except (OSError, asyncpg.PostgresError) as exc:
            pytest.fail(
                f"PostgreSQL is not usable at {PG_ADMIN_URL} ({exc!r}); the store contract suite "
                "runs against PostgreSQL too and does not skip it. Start the server or set "
                "VATIO_PG_ADMIN_URL.",
                pytrace=False,
            )
        self.created.append(url)
        return url

    async def drop_all(self) -> None:
        while self.created:
            await drop_database(self.created.pop())


async def reset_pg_schemas(url: str) -> None:
    """Drop every user schema of the database at ``url`` and recreate an empty ``public``."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute("SET lock_timeout = '10s'")
        await conn.execute(_RESET_SCHEMAS)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PgDatabases]:
    """Session-wide factory of fresh PostgreSQL databases: ``await pg_databases.create()``."""
    databases = PgDatabases()
    yield databases
    run_in_thread(databases.drop_all())


@pytest.fixture(scope="session")
def pg_url(pg_databases: PgDatabases) -> str:
    """The session's own fresh database; ``store`` resets its schemas before each test."""
    return run_in_thread(pg_databases.create())


@pytest.fixture
async def fresh_pg_url(pg_databases: PgDatabases) -> str:
    """A brand-new empty PostgreSQL database for one test (dropped at session end)."""
    return await pg_databases.create()


def _postgres_store_class() -> type[Any]:
    try:
        from vatio.store.postgres import PostgresStore
    except ImportError as exc:
        pytest.fail(
            f"vatio.store.postgres.PostgresStore cannot be imported ({exc!r}); the store contract "
            "suite must run against both backends, so the postgres variant fails instead of skipping.",
            pytrace=False,
        )
    return PostgresStore


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Name of the store backend under test."""
    return str(request.param)


@pytest.fixture
async def store_factory(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Opens migrated, empty stores of the backend under test; all closed after the test.

    The first store of a PostgreSQL test lives in the session database with
    its schemas reset; every further one gets a database of its own.
    """
    opened: list[Store] = []
    if backend == "postgres":
        # Resolved up front so a missing backend or server fails the test at set-up.
        store_class = _postgres_store_class()
        databases: PgDatabases = request.getfixturevalue("pg_databases")
        session_url: str = request.getfixturevalue("pg_url")

    async def make() -> Store:
        if backend == "sqlite":
            store: Store = _sqlite_store(f"sqlite:///{tmp_path}/vatio-{len(opened)}.db")
        elif opened:
            store = store_class(await databases.create())
        else:
            await reset_pg_schemas(session_url)
            store = store_class(session_url)
        opened.append(store)
        await store.migrate()
        return store

    yield make
    for store in opened:
        await store.close()


def _sqlite_store(url: str) -> Store:
    from vatio.store.sqlite import SqliteStore

    return SqliteStore(url)


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    """A migrated, empty store of each backend (``sqlite`` and ``postgres``)."""
    return await store_factory()


@pytest.fixture
def broker_port() -> Iterator[int]:
    """A private mosquitto (deployment settings: unbounded session queues) on a free port."""
    with mosquitto() as port:
        yield port
