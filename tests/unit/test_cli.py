"""The `vatio` command: exit codes, one-line errors, and the `db` tasks on a SQLite file.

Most tests call :func:`vatio.cli.main` in-process; a few run ``python -m vatio.cli``
to check what a shell really sees (the process exit code, nothing but one line
on stderr).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vatio.cli import main
from vatio.model import Reading
from vatio.store import open_store, write_all

EXIT_USAGE = 2
OLD = datetime(2026, 1, 31, 10, tzinfo=UTC)


def sqlite_url(tmp_path: Path, name: str = "vatio.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def run_main(argv: Sequence[str]) -> int:
    """``main``'s exit code, including argparse's ``SystemExit``."""
    try:
        return main(list(argv))
    except SystemExit as exc:
        code = exc.code
    assert isinstance(code, int), code
    return code


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("vatio: error: "), stderr
    return lines[0]


def stats_json(capsys: pytest.CaptureFixture[str], url: str) -> dict[str, int]:
    assert main(["db", "stats", "--json", "--db", url]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    stats: dict[str, int] = json.loads(out[-1])
    return stats


def seed(url: str, readings: list[Reading]) -> None:
    async def write() -> None:
        store = open_store(url)
        await store.migrate()
        try:
            await write_all(store, readings, "home-1")
        finally:
            await store.close()

    asyncio.run(write())


def vatio_process(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vatio.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


# -- db ---------------------------------------------------------------------------------


def test_db_migrate_then_stats_json_on_an_empty_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = sqlite_url(tmp_path, "sub/dir/vatio.db")
    assert main(["db", "migrate", "--db", url]) == 0
    assert "schema up to date" in capsys.readouterr().out
    assert (tmp_path / "sub/dir/vatio.db").is_file()

    stats = stats_json(capsys, url)
    assert {"readings", "devices", "dead_letters"} <= set(stats)
    assert stats["readings"] == stats["devices"] == stats["dead_letters"] == 0
    assert stats["pending_rollups"] == 0


def test_db_migrate_twice_is_harmless(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = sqlite_url(tmp_path)
    assert main(["db", "migrate", "--db", url]) == 0
    assert main(["db", "migrate", "--db", url]) == 0
    assert stats_json(capsys, url)["readings"] == 0


def test_db_stats_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed(sqlite_url(tmp_path), [Reading("plug-1", OLD, power_w=10.0), Reading("plug-2", OLD, power_w=1.0)])
    assert main(["db", "stats", "--db", sqlite_url(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "readings: 2" in lines
    assert "devices: 2" in lines
    assert "dead_letters: 0" in lines


def test_db_rollups_then_retention(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = sqlite_url(tmp_path)
    # Three one-minute readings, long ago: 3 one-minute rollup rows plus one each
    # for 15 min, 1 h and 1 day.
    seed(url, [Reading("meter", OLD + timedelta(minutes=m), power_w=600.0) for m in range(3)])
    before = stats_json(capsys, url)
    assert (before["readings"], before["pending_rollups"], before["rollup_rows"]) == (3, 1, 0)

    assert main(["db", "rollups", "--db", url]) == 0
    assert capsys.readouterr().out.strip() == "recomputed 1 dirty ranges"
    after = stats_json(capsys, url)
    assert (after["pending_rollups"], after["rollup_rows"]) == (0, 6)

    assert main(["db", "retention", "--raw-days", "30", "--db", url]) == 0
    assert "readings_deleted=3" in capsys.readouterr().out
    kept = stats_json(capsys, url)
    assert (kept["readings"], kept["rollup_rows"]) == (0, 6)


def test_retention_keeps_recent_readings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = sqlite_url(tmp_path)
    recent = datetime.now(UTC) - timedelta(days=1)
    seed(url, [Reading("meter", OLD, power_w=1.0), Reading("meter", recent, power_w=2.0)])
    assert main(["db", "retention", "--raw-days", "30", "--db", url]) == 0
    assert "readings_deleted=1" in capsys.readouterr().out
    assert stats_json(capsys, url)["readings"] == 1


# -- invalid input: one line on stderr, exit 2 ------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["db", "stats", "--json", "--db", "mysql://x"], "unsupported database URL 'mysql://x'"),
        (["db", "migrate", "--db", "sqlite:///"], "has no path"),
        (["api", "--db", "mysql://x"], "unsupported database URL"),
        (["bench", "nosuch"], "no benchmark 'nosuch'"),
        (["sim", "--broker", "http://x"], "must start with mqtt:// or mqtts://"),
    ],
)
def test_invalid_values_exit_2_with_one_line(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    assert words in one_error_line(captured.err)
    assert captured.out == ""


@pytest.mark.parametrize(
    ("broker", "words"),
    [
        ("http://x", "must start with mqtt:// or mqtts://"),
        ("mqtt://host:notaport", "invalid port"),
        ("mqtt://", "has no host"),
    ],
)
def test_ingest_with_a_bad_broker_url_fails_before_touching_the_database(
    tmp_path: Path, broker: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_main(["ingest", "--broker", broker, "--db", sqlite_url(tmp_path)])
    assert code == EXIT_USAGE
    line = one_error_line(capsys.readouterr().err)
    assert words in line
    assert repr(broker) in line
    assert not (tmp_path / "vatio.db").exists()


def test_unreachable_postgres_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 1 on loopback refuses at once: no server listens there.
    assert run_main(["db", "stats", "--db", "postgresql://vatio@127.0.0.1:1/none"]) == EXIT_USAGE
    assert "cannot connect to PostgreSQL" in one_error_line(capsys.readouterr().err)


def test_sqlite_path_under_a_regular_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("not a directory")
    assert run_main(["db", "migrate", "--db", sqlite_url(tmp_path, "afile/vatio.db")]) == EXIT_USAGE
    one_error_line(capsys.readouterr().err)


# -- argparse usage errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["db", "stats", "--db", "sqlite:///x.db", "--bogus"], "unrecognized arguments: --bogus"),
        (["up", "--homes", "0"], "--homes: must be > 0, got 0"),
        (["up", "--interval", "0"], "--interval: must be > 0"),
        (["sim", "--broker", "mqtt://x", "--homes", "0"], "--homes: must be > 0"),
        (["sim", "--broker", "mqtt://x", "--qos", "2"], "invalid choice"),
        (["ingest", "--db", "sqlite:///x.db"], "--broker"),
        (["db", "retention", "--db", "sqlite:///x.db"], "--raw-days"),
        (["db"], "required"),
        ([], "required"),
        (["nosuch"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    assert "usage: vatio" in captured.err
    assert words in captured.err
    assert captured.out == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--version"]) == 0
    assert capsys.readouterr().out == f"vatio {importlib.metadata.version('vatio')}\n"


# -- as a real process ------------------------------------------------------------------


def test_process_bad_database_url() -> None:
    done = vatio_process("db", "stats", "--json", "--db", "mysql://x")
    assert done.returncode == EXIT_USAGE
    assert "unsupported database URL" in one_error_line(done.stderr)
    assert done.stdout == ""


def test_process_usage_error() -> None:
    done = vatio_process("up", "--homes", "0")
    assert done.returncode == EXIT_USAGE
    assert "--homes: must be > 0" in done.stderr


def test_process_migrate_and_stats(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    assert vatio_process("db", "migrate", "--db", url).returncode == 0
    done = vatio_process("db", "stats", "--json", "--db", url)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert (stats["readings"], stats["devices"], stats["dead_letters"]) == (0, 0, 0)
