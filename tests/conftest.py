"""Shared fixtures of the core tests: running the real ``segship`` CLI and writing configs.

The CLI runs as a subprocess of the venv's own ``segship`` script, in a clean
environment: no ``SEGSHIP_*`` variable and no destination secret leaks in from the
shell running the tests, so a test sets exactly what it needs.
"""

from __future__ import annotations

import os
import shutil
import ssl
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from segship_braze.sandbox import SANDBOX_API_KEY as BRAZE_KEY
from segship_braze.sandbox import BrazeSandbox, RunningBrazeSandbox
from segship_sendinblue.sandbox import SANDBOX_API_KEY as BREVO_KEY
from segship_sendinblue.sandbox import BrevoSandbox, RunningBrevoSandbox

from .alert_receivers import SmtpServer, WebhookReceiver
from .postgres_server import PostgresServer

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIGS = REPO / "configs"

#: variables that would change what the CLI does, removed from every subprocess (``CI``: validate warns
#: of local state in CI)
_STRIPPED_PREFIXES = ("SEGSHIP_", "BRAZE_", "BREVO_", "SENDINBLUE_")
_STRIPPED = frozenset({"CI"})


def segship_script(python: str | Path = sys.executable) -> Path:
    """The ``segship`` console script installed next to a Python interpreter."""
    script = Path(python).parent / "segship"
    if not script.exists():
        found = shutil.which("segship")
        assert found, f"no segship script next to {python}"
        script = Path(found)
    return script


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without segship settings or destination secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_PREFIXES) and k not in _STRIPPED}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONUTF8": "1"})
    env.update(extra or {})
    return env


@dataclass
class CliResult:
    args: list[str]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:  # shown by pytest when an assertion fails
        return (f"$ segship {' '.join(self.args)}\nexit {self.exit_code}\n--- stdout\n{self.stdout}"
                f"--- stderr\n{self.stderr}")


def run_segship(args: list[str], *, cwd: Path, env: Mapping[str, str] | None = None,
                python: str | Path = sys.executable, timeout: float = 60) -> CliResult:
    """Run ``segship ARGS`` as a subprocess in ``cwd`` with a clean environment plus ``env``."""
    completed = subprocess.run([str(segship_script(python)), *args], cwd=cwd, env=clean_env(env),
                               capture_output=True, text=True, timeout=timeout)
    return CliResult(list(args), completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture(scope="session")
def segship_runner() -> Callable[..., CliResult]:
    """:func:`run_segship` itself, for fixtures that choose their own folder or interpreter."""
    return run_segship


@pytest.fixture(scope="session")
def file_writer() -> Callable[[Path, Mapping[str, str]], None]:
    """:func:`write_files` itself: ``file_writer(root, {relative path: text})``."""
    return write_files


@pytest.fixture
def segship(tmp_path: Path) -> Callable[..., CliResult]:
    """``segship(*args, env={...}, cwd=...)`` runs the real CLI, by default in ``tmp_path``."""

    def run(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> CliResult:
        return run_segship(list(args), cwd=cwd or tmp_path, env=env)

    return run


def write_files(root: Path, files: Mapping[str, str]) -> None:
    """Write ``{relative path: text}`` below ``root``; texts are dedented and stripped of a leading newline."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


@pytest.fixture
def braze_sandbox() -> Iterator[RunningBrazeSandbox]:
    """A fresh Braze sandbox on 127.0.0.1 accepting only its ``SANDBOX_API_KEY``, without a rate limit."""
    with RunningBrazeSandbox(BrazeSandbox(api_key=BRAZE_KEY)) as running:
        yield running


@pytest.fixture
def sendinblue_sandbox() -> Iterator[RunningBrevoSandbox]:
    """A fresh Brevo sandbox on 127.0.0.1 accepting only its ``SANDBOX_API_KEY``, processing imports at once."""
    with RunningBrevoSandbox(BrevoSandbox(api_key=BREVO_KEY, process_delay=0.01)) as running:
        yield running


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[Mapping[str, str]], Path]:
    """Write config files into ``tmp_path``; returns ``tmp_path``."""

    def write(files: Mapping[str, str]) -> Path:
        write_files(tmp_path, files)
        return tmp_path

    return write


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def permissive_umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process's umask (inherited by the CLI's subprocesses) for the test: the usual one, and one
    that takes nothing away, so a file segship keeps private is private whatever the umask."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def file_mode(path: Path) -> int:
    """The permission bits of a file or folder (0o600...)."""
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL 16 server for the test session (127.0.0.1, a free port, password auth)."""
    with running_postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server (``postgresql://user:pass@127.0.0.1:port/db``)."""
    return postgres_server.create_database()


@dataclass
class StateTarget:
    """Where a test's state lives: ``yaml`` is the value of the config's ``state:``, ``env`` what it reads.

    ``warehouse`` (the ``warehouse`` and ``streamed`` variants): the URL of a PostgreSQL database that
    holds the test's source table, with state in a SQLite file. ``planned``: the export is planned
    there (``planner: {schema: segship}``); else (``streamed``) its rows stream to the local planner,
    which plans them by bucket (``engine/buckets.py``).
    """

    backend: str
    yaml: str
    env: dict[str, str]
    warehouse: str | None = None
    planned: bool = True

    @property
    def planner(self) -> str | None:
        """The URL of the warehouse whose planner schema keeps the export's members, if one does."""
        return self.warehouse if self.planned else None

    def state_location(self, root: Path) -> str | Path:
        """What ``open_state_at`` opens: the PostgreSQL URL, or the SQLite file in ``root``."""
        return self.env["SEGSHIP_STATE_URL"] if "SEGSHIP_STATE_URL" in self.env else root / ".segship" / "state.db"

    def load(self, table: str, rows: list[dict[str, object]], types: dict[str, str]) -> None:
        """Make ``table`` in the warehouse hold exactly ``rows`` (columns and their PostgreSQL ``types``)."""
        import adbc_driver_postgresql.dbapi as postgresql

        columns = ", ".join(f"{name} {type_}" for name, type_ in types.items())
        with postgresql.connect(self.warehouse) as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
            cursor.execute(f"CREATE TABLE {table} ({columns})")
            if rows:
                marks = ", ".join(f"${index + 1}" for index in range(len(types)))
                cursor.executemany(f"INSERT INTO {table} VALUES ({marks})",
                                   [tuple(_loaded(row.get(name), types[name]) for name in types) for row in rows])
            connection.commit()


def _loaded(value: object, type_: str) -> object:
    """A CSV value as the warehouse column takes it ('' is NULL, as DuckDB reads an empty CSV field)."""
    if value is None or value == "":
        return None
    return int(value) if type_ == "bigint" else str(value)


@pytest.fixture(params=["sqlite", "postgres"])
def state_target(request: pytest.FixtureRequest) -> StateTarget:
    """Each state backend in turn: a SQLite file in the config's folder, or a new PostgreSQL database
    (and, for tests that parametrize it so, ``warehouse`` and ``streamed``: see :class:`StateTarget`)."""
    if request.param == "sqlite":
        return StateTarget("sqlite", "{path: .segship/state.db}", {})
    if request.param in ("warehouse", "streamed"):
        url = request.getfixturevalue("postgres_url")
        return StateTarget(request.param, "{path: .segship/state.db}", {"WAREHOUSE_URL": url}, warehouse=url,
                           planned=request.param == "warehouse")
    url = request.getfixturevalue("postgres_url")
    return StateTarget("postgres", '{url: "${env:SEGSHIP_STATE_URL}"}', {"SEGSHIP_STATE_URL": url})


@pytest.fixture
def own_postgres_server() -> Iterator[PostgresServer]:
    """A server of the test's own, for tests that stop it (a database going away mid-run)."""
    with running_postgres_server() as server:
        yield server


@contextmanager
def running_postgres_server() -> Iterator[PostgresServer]:
    """A server in a folder of its own, stopped and removed afterwards.

    The folder is not pytest's: pytest deletes all but the newest three base temp folders of a
    user, so another pytest session on the machine would delete a live server's data.
    """
    root = Path(tempfile.mkdtemp(prefix="segship-postgres-"))
    server = PostgresServer(root)
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A Slack-style incoming-webhook receiver on 127.0.0.1 that keeps every POST."""
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server on 127.0.0.1 (a relay: no TLS, no login) that keeps every message."""
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="session")
def certificate_authority() -> trustme.CA:
    """A test CA; ``SSL_CERT_FILE`` naming its PEM makes segship trust what it signed."""
    return trustme.CA()


@pytest.fixture
def smtp_tls_server(certificate_authority: trustme.CA) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 that requires STARTTLS (a certificate for 127.0.0.1 from
    ``certificate_authority``) and a login (``mailer`` / ``smtp-password-value``) before any mail."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with SmtpServer(tls=context) as server:
        yield server
