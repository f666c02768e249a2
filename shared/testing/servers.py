"""Real PostgreSQL and Apache Kafka servers as local processes, for tests, `make` targets and benchmarks.

No Docker: PostgreSQL runs from the Debian server binaries (/usr/lib/postgresql/<v>/bin), Kafka 3.9.1 (KRaft,
one node acting as broker and controller) runs from the Maven Central jars resolved by deploy/kafka/pom.xml
into .cache/kafka-3.9.1/libs. Both listen on 127.0.0.1 only, on free ports, with their files in a temporary
folder (or one you give). Every process is stopped by the PID we started it with, never by name.

Standard library only at import time; asyncpg and aiokafka are imported where they are needed. Blocking calls
(start/stop/restart/kill, create_database) are synchronous and safe to call from pytest fixtures whatever
event loop the tests use: any asyncio work they need runs on a private loop in a worker thread.

    with PostgresServer() as pg, KafkaServer() as kafka:
        print(pg.dsn, kafka.bootstrap)

Command line (for `make` targets): `python -m shared.testing.servers [jars] [postgres] [kafka]` starts the
named servers, prints `LYNCHPIN_TEST_PG_DSN=...` / `LYNCHPIN_TEST_KAFKA=...` and runs until Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import fcntl
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "KAFKA_LIBS",
    "KAFKA_VERSION",
    "REPO_ROOT",
    "ExternalKafka",
    "ExternalPostgres",
    "KafkaServer",
    "PostgresServer",
    "ServerError",
    "create_database",
    "create_topics",
    "drop_database",
    "dsn_with_database",
    "ensure_kafka_jars",
    "find_postgres_bin",
    "free_port",
    "free_ports",
    "run_async",
]

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_VERSION = "3.9.1"
KAFKA_LIBS = REPO_ROOT / ".cache" / f"kafka-{KAFKA_VERSION}" / "libs"
KAFKA_POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
MAVEN_REPO = REPO_ROOT / ".cache" / "m2"
LOOPBACK = "127.0.0.1"

# Kafka error codes that create_topics accepts.
_KAFKA_NO_ERROR = 0
_KAFKA_TOPIC_ALREADY_EXISTS = 36


class ServerError(RuntimeError):
    """A server could not be prepared, started or stopped."""


# --------------------------------------------------------------------------------------------- helpers


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on `host` a moment ago (bind to port 0, read it, close)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """`count` distinct free TCP ports (all sockets are held open until every port is picked)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


async def _port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run `factory()` to completion on a fresh event loop in a worker thread and return its result.

    Works whether or not the calling thread has a running or current event loop, and never touches it.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        async def main() -> T:
            return await factory()

        try:
            box["result"] = asyncio.run(main())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="lynchpin-servers-async", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


def _log_tail(path: Path | None, lines: int = 60) -> str:
    if path is None or not path.exists():
        return "(no log file)"
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def _fail(what: str, log: Path | None) -> ServerError:
    tail = _log_tail(log)
    message = f"{what}\n--- last lines of {log} ---\n{tail}\n--- end of log ---"
    print(message, file=sys.stderr, flush=True)
    return ServerError(message)


def _child_pids(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (read from /proc; empty where /proc is missing)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _gone(pid: int) -> bool:
    """True when `pid` has exited (absent, or a zombie nobody reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def _wait_gone(pids: Iterable[int], timeout: float) -> bool:
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = [p for p in pending if not _gone(p)]
        if pending:
            time.sleep(0.05)
    return not pending


# Servers started by this process, stopped at interpreter exit if their owner forgot (or crashed).
_live: set[Any] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_leftovers() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


class _Process:
    """One child process we started: its Popen, its log file handle, and how to end it."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log_fh: Any) -> None:
        self.name = name
        self.proc = proc
        self.log_fh = log_fh

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, sig: int, timeout: float) -> None:
        """Send `sig`, wait up to `timeout` s, then SIGKILL. Always reaps the process and closes the log."""
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    print(
                        f"{self.name} (pid {self.pid}) did not stop in {timeout:.0f}s: SIGKILL",
                        file=sys.stderr,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        self.proc.kill()
                    self.proc.wait()
        finally:
            self.close()

    def close(self) -> None:
        if self.log_fh is not None and not self.log_fh.closed:
            self.log_fh.close()


class _ServerBase:
    external = False
    startup_seconds: float | None = None

    def __init__(self) -> None:
        self._process: _Process | None = None
        self._owned_dir: Path | None = None
        self.keep_dir = os.environ.get("LYNCHPIN_KEEP_SERVER_DIRS", "") not in ("", "0")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._process.running() else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running()

    # Ports picked by us (not given) may be taken by someone else between the pick and the bind: the first
    # start then retries with new ones. Once a server has started, its ports stay fixed (restart reuses them).
    _ports_fixed = False

    def start(self) -> Self:
        """Start the server and wait until it is ready; a no-op when it is running. Returns self."""
        if self.running:
            return self
        t0 = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                self._start_once()
                break
            except ServerError:
                if (
                    self._ports_fixed
                    or attempt >= 3
                    or "Address already in use" not in self._log_since_spawn()
                ):
                    raise
                print(f"{type(self).__name__}: port taken, retrying with new ports", file=sys.stderr)
                self._clear_ports()
        self._ports_fixed = True
        self.startup_seconds = time.monotonic() - t0
        return self

    def _start_once(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _clear_ports(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def restart(self) -> Self:
        """Stop (gracefully), then start again on the same ports with the same data."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop, then delete the temporary folder this object created (unless LYNCHPIN_KEEP_SERVER_DIRS=1)."""
        self.stop()
        if self._owned_dir is not None and not self.keep_dir:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None

    def _log_since_spawn(self) -> str:
        """What the last process we spawned wrote to its log."""
        log: Path | None = getattr(self, "log_path", None)
        if log is None or not log.exists():
            return ""
        with log.open("rb") as fh:
            fh.seek(self._log_offset)
            return fh.read().decode("utf-8", "replace")

    _log_offset = 0

    def _spawn(self, name: str, argv: list[str], log: Path, **kwargs: Any) -> None:
        log_fh = log.open("ab")
        self._log_offset = log_fh.tell()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, not the server directly
                **kwargs,
            )
        except BaseException:
            log_fh.close()
            raise
        self._process = _Process(name, proc, log_fh)
        with _live_lock:
            _live.add(self)

    def _forget(self) -> None:
        with _live_lock:
            _live.discard(self)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()  # do not leak the temporary folder when the start fails
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- PostgreSQL


def _pg_version_key(path: str) -> tuple[int, ...]:
    m = re.search(r"/postgresql/([0-9.]+)/bin", path)
    return tuple(int(x) for x in m.group(1).split(".") if x) if m else (0,)


def find_postgres_bin() -> Path:
    """The folder holding `postgres`, `initdb`, `pg_isready`: $LYNCHPIN_PG_BIN, the newest
    /usr/lib/postgresql/*/bin, or the one on PATH."""
    env = os.environ.get("LYNCHPIN_PG_BIN")
    if env:
        return Path(env)
    candidates = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").exists()),
        key=lambda p: _pg_version_key(str(p)),
    )
    if candidates:
        return candidates[-1]
    found = shutil.which("postgres") or shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise ServerError(
        "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH); "
        "install them with: apt-get install -y postgresql"
    )


def dsn_with_database(dsn: str, database: str) -> str:
    """`dsn` (postgresql://...) with its database name replaced."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _quote_ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"unsafe database name: {name!r}")
    return f'"{name}"'


async def _create_database_async(dsn: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return
        with contextlib.suppress(asyncpg.DuplicateDatabaseError):
            await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
    finally:
        await conn.close()


async def _drop_database_async(dsn: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


def create_database(dsn: str, name: str) -> str:
    """Create database `name` (if missing) on the server `dsn` points at; return the new database's DSN."""
    quoted = _quote_ident(name)  # validate before doing anything
    del quoted
    run_async(lambda: _create_database_async(dsn, name))
    return dsn_with_database(dsn, name)


def drop_database(dsn: str, name: str) -> None:
    """Drop database `name` on the server `dsn` points at, terminating its connections (PostgreSQL 13+)."""
    run_async(lambda: _drop_database_async(dsn, name))


class PostgresServer(_ServerBase):
    """A throwaway PostgreSQL cluster on 127.0.0.1 with trust auth and a `lynchpin` database.

    DSN: postgresql://postgres@127.0.0.1:<port>/lynchpin. Durable settings (fsync=on, synchronous_commit=on,
    full_page_writes=on) because tests kill it. As root, initdb/postgres run as the `postgres` OS user and the
    data folder is given to it (its parent folders must be traversable by that user).
    """

    user = "postgres"
    database = "lynchpin"

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        *,
        bin_dir: str | os.PathLike[str] | None = None,
        os_user: str = "postgres",
        settings: dict[str, str] | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        if data_dir is None:
            self._owned_dir = Path(tempfile.mkdtemp(prefix="lynchpin-pg-"))
            self.data_dir = self._owned_dir / "data"
            self.log_path = self._owned_dir / "postgres.log"
        else:
            self.data_dir = Path(data_dir).resolve()
            self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        self.port = port
        self._ports_fixed = port is not None
        self.bin_dir = Path(bin_dir) if bin_dir is not None else None
        self.os_user = os_user
        self.settings = {
            "listen_addresses": LOOPBACK,
            "unix_socket_directories": str(self.data_dir),
            "max_connections": "200",
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
        }
        self.settings.update(settings or {})
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout

    # -- addresses

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.database)

    @property
    def admin_dsn(self) -> str:
        """DSN of the `postgres` maintenance database (for CREATE/DROP DATABASE)."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        if self.port is None:
            raise ServerError("PostgresServer has no port yet: call start() first")
        return f"postgresql://{self.user}@{LOOPBACK}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` if missing; return its DSN."""
        return create_database(self.admin_dsn, name)

    def drop_database(self, name: str) -> None:
        drop_database(self.admin_dsn, name)

    # -- lifecycle

    def _user_kwargs(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        try:
            pw = pwd.getpwnam(self.os_user)
        except KeyError:
            raise ServerError(
                f"running as root but OS user {self.os_user!r} does not exist "
                "(PostgreSQL refuses to run as root; apt-get install -y postgresql creates it)"
            ) from None
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and not k.startswith("LC_")}
        env.update(LC_ALL="C", LANG="C")
        return env

    def _prepare_data_dir(self, as_user: dict[str, Any]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if as_user and self.data_dir.stat().st_uid != as_user["user"]:
            os.chown(self.data_dir, as_user["user"], as_user["group"])
            if self._owned_dir is not None:
                os.chmod(self._owned_dir, 0o755)
        os.chmod(self.data_dir, 0o700)

    def start(self) -> PostgresServer:
        """initdb (first time only), start the postmaster, wait for connections, create `lynchpin`."""
        return super().start()

    def _clear_ports(self) -> None:
        self.port = None

    def _start_once(self) -> None:
        bin_dir = self.bin_dir or find_postgres_bin()
        self.bin_dir = bin_dir
        if self.port is None:
            self.port = free_port()
        as_user = self._user_kwargs()
        env = self._env()
        self._prepare_data_dir(as_user)

        if not (self.data_dir / "PG_VERSION").exists():
            initdb = subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",  # only skips fsyncing the fresh cluster files; the server runs with fsync=on
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=env,
                check=False,
                **as_user,
            )
            if initdb.returncode != 0:
                raise ServerError(
                    f"initdb failed ({initdb.returncode}):\n{initdb.stdout.decode(errors='replace')}"
                )

        argv = [str(bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        self._spawn("postgres", argv, self.log_path, cwd=self.data_dir, env=env, **as_user)
        try:
            self._wait_ready(bin_dir, env)
            create_database(self.admin_dsn, self.database)
        except BaseException:
            self._abort()
            raise

    def _wait_ready(self, bin_dir: Path, env: dict[str, str]) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        isready = [
            str(bin_dir / "pg_isready"),
            "-q",
            "-h",
            LOOPBACK,
            "-p",
            str(self.port),
            "-d",
            "postgres",
            "-t",
            "2",
        ]
        while True:
            if not self._process.running():
                raise _fail(
                    f"postgres exited with code {self._process.proc.returncode} during startup", self.log_path
                )
            rc = subprocess.run(isready, env=env, stdin=subprocess.DEVNULL, check=False).returncode
            if rc == 0:
                return
            if time.monotonic() > deadline:
                raise _fail(
                    f"postgres not ready on port {self.port} after {self.start_timeout:.0f}s", self.log_path
                )
            time.sleep(0.05)

    def _abort(self) -> None:
        if self._process is not None:
            self._process.terminate(signal.SIGKILL, 10)
            self._process = None
        self._forget()

    def stop(self, timeout: float | None = None) -> None:
        """Fast shutdown (SIGINT: roll back sessions, checkpoint, exit); SIGKILL after `timeout` s."""
        if self._process is None:
            return
        self._process.terminate(signal.SIGINT, self.stop_timeout if timeout is None else timeout)
        self._process = None
        self._forget()

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash: no checkpoint). Waits until its backends notice and exit, so that
        restart() can reuse the data folder at once."""
        if self._process is None:
            return
        pid = self._process.pid
        children = _child_pids(pid)
        self._process.terminate(signal.SIGKILL, 10)
        self._process = None
        self._forget()
        if not _wait_gone(children, 15):
            print(f"postgres backends of {pid} still alive after SIGKILL of the postmaster", file=sys.stderr)

    def restart(self) -> PostgresServer:
        """Stop (fast mode; a no-op after kill()) and start again: same port, same data folder."""
        self.stop()
        return self.start()

    def __repr__(self) -> str:
        return f"PostgresServer(port={self.port}, pid={self.pid}, data_dir={str(self.data_dir)!r})"


class ExternalPostgres:
    """A PostgreSQL server someone else runs (LYNCHPIN_TEST_PG_DSN); same read API as PostgresServer."""

    external = True
    startup_seconds = 0.0
    pid = None
    running = True

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.admin_dsn = dsn
        self.port = urlsplit(dsn).port or 5432

    def dsn_for(self, database: str) -> str:
        return dsn_with_database(self.dsn, database)

    def create_database(self, name: str) -> str:
        return create_database(self.admin_dsn, name)

    def drop_database(self, name: str) -> None:
        drop_database(self.admin_dsn, name)

    def start(self) -> ExternalPostgres:
        return self

    def stop(self, timeout: float | None = None) -> None:
        return None

    close = stop

    def kill(self) -> None:
        raise ServerError("cannot kill an external PostgreSQL server (LYNCHPIN_TEST_PG_DSN is set)")

    def restart(self) -> ExternalPostgres:
        raise ServerError("cannot restart an external PostgreSQL server (LYNCHPIN_TEST_PG_DSN is set)")


# ------------------------------------------------------------------------------------------------ Kafka

_REQUIRED_JARS = (
    "kafka_2.13-",
    "kafka-clients-",
    "kafka-server-",
    "slf4j-reload4j-",
    "reload4j-",
    "scala-library-",
)


def _jars_complete(libs: Path) -> bool:
    if not libs.is_dir():
        return False
    names = [p.name for p in libs.glob("*.jar")]
    return all(any(n.startswith(prefix) for n in names) for prefix in _REQUIRED_JARS)


def ensure_kafka_jars(libs_dir: str | os.PathLike[str] | None = None, *, quiet: bool = True) -> Path:
    """Make sure the Kafka broker jars are in `libs_dir` (default .cache/kafka-3.9.1/libs); fetch them with
    Maven (deploy/kafka/pom.xml, local repository .cache/m2) when missing. Safe to call concurrently."""
    libs = Path(libs_dir) if libs_dir is not None else KAFKA_LIBS
    if _jars_complete(libs):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServerError(f"Kafka jars missing in {libs} and `mvn` is not on PATH")
    libs.parent.mkdir(parents=True, exist_ok=True)
    with (libs.parent / ".fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _jars_complete(libs):
            return libs
        staging = libs.with_name(libs.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            *(["-q"] if quiet else []),
            "-B",
            "-f",
            str(KAFKA_POM),
            f"-Dmaven.repo.local={MAVEN_REPO}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
        ]
        result = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=quiet, cwd=REPO_ROOT, check=False
        )
        if result.returncode != 0 or not _jars_complete(staging):
            output = ((result.stdout or b"") + (result.stderr or b"")).decode(errors="replace")
            raise ServerError(
                f"fetching the Kafka jars failed ({result.returncode}): {' '.join(cmd)}\n{output[-4000:]}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        os.replace(staging, libs)
    return libs


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise ServerError("`java` not found (install OpenJDK 17, or set JAVA_HOME)")
    return found


_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


async def _admin(bootstrap: str, request_timeout_ms: int = 10000) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms, client_id="lynchpin-test-servers"
    )
    try:
        await admin.start()
    except BaseException:
        await admin.close()
        raise
    return admin


async def create_topics(
    bootstrap: str,
    names: str | Iterable[str],
    partitions: int = 1,
    replication_factor: int = 1,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Create topics (an existing topic, error 36, is fine) and wait until every partition has a leader."""
    from aiokafka.admin import NewTopic

    wanted = [names] if isinstance(names, str) else list(names)
    if not wanted:
        return
    admin = await _admin(bootstrap)
    try:
        new = [NewTopic(n, partitions, replication_factor, topic_configs=dict(config or {})) for n in wanted]
        response = await admin.create_topics(new, timeout_ms=int(timeout * 1000))
        errors = []
        for entry in response.topic_errors:
            topic, code = entry[0], entry[1]
            if code not in (_KAFKA_NO_ERROR, _KAFKA_TOPIC_ALREADY_EXISTS):
                message = entry[2] if len(entry) > 2 else ""
                errors.append(f"{topic}: error {code} {message or ''}".strip())
        if errors:
            raise ServerError("create_topics failed: " + "; ".join(errors))
        deadline = time.monotonic() + timeout
        while True:
            described = await admin.describe_topics(wanted)
            ready = len(described) == len(wanted) and all(
                t["error_code"] == 0
                and t["partitions"]
                and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
                for t in described
            )
            if ready:
                return
            if time.monotonic() > deadline:
                raise ServerError(f"topics {wanted} have no leader after {timeout:.0f}s: {described}")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _wait_kafka_ready(bootstrap: str, port: int, deadline: float, alive: Callable[[], bool]) -> None:
    last: BaseException | None = None
    while True:
        if not alive():
            raise ServerError("Kafka exited during startup")
        if time.monotonic() > deadline:
            raise ServerError(f"Kafka not ready at {bootstrap}: {last!r}")
        if await _port_open(port):
            try:
                admin = await _admin(bootstrap, request_timeout_ms=5000)
                try:
                    cluster = await admin.describe_cluster()
                finally:
                    await admin.close()
                if cluster.get("brokers"):
                    return
                last = ServerError(f"no brokers in {cluster}")
            except Exception as exc:  # not ready yet
                last = exc
        await asyncio.sleep(0.2)


class KafkaServer(_ServerBase):
    """A one-node Apache Kafka 3.9 cluster (KRaft, broker + controller) on 127.0.0.1.

    Topics are not auto-created: use `await server.create_topics([...])`. Internal topics (offsets,
    transaction state) have one partition and replication factor 1, and the first group join is not delayed.
    """

    def __init__(
        self,
        work_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        *,
        libs_dir: str | os.PathLike[str] | None = None,
        heap: str = "512m",
        fast_jit: bool = True,
        properties: dict[str, str] | None = None,
        jvm_options: Iterable[str] = (),
        start_timeout: float = 90.0,
        stop_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        if work_dir is None:
            self._owned_dir = Path(tempfile.mkdtemp(prefix="lynchpin-kafka-"))
            self.work_dir = self._owned_dir
        else:
            self.work_dir = Path(work_dir).resolve()
        self.data_dir = self.work_dir / "data"
        self.properties_path = self.work_dir / "server.properties"
        self.log4j_path = self.work_dir / "log4j.properties"
        self.log_path = self.work_dir / "kafka.log"
        self.port = port
        self.controller_port = controller_port
        self._ports_fixed = port is not None and controller_port is not None
        self.libs_dir = Path(libs_dir) if libs_dir is not None else KAFKA_LIBS
        self.heap = heap
        # -XX:TieredStopAtLevel=1: faster start, slower steady state (turn off for benchmarks).
        self.fast_jit = fast_jit
        self.extra_properties = dict(properties or {})
        self.jvm_options = list(jvm_options)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.cluster_id: str | None = None

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise ServerError("KafkaServer has no port yet: call start() first")
        return f"{LOOPBACK}:{self.port}"

    async def create_topics(
        self,
        names: str | Iterable[str],
        partitions: int = 1,
        replication_factor: int = 1,
        config: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        await create_topics(self.bootstrap, names, partitions, replication_factor, config, timeout)

    def _properties(self) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{LOOPBACK}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{self.port},CONTROLLER://{LOOPBACK}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),  # default 128 MiB lives on the heap
            "log.cleaner.threads": "1",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            # After a SIGKILL the restarted controller keeps the dead broker's registration until its session
            # times out (default 9 s, then registration retries back off): restart-after-kill took ~15 s.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
        }
        props.update(self.extra_properties)
        return props

    def _java_cmd(self, main_class: str, *args: str, heap: str = "256m", jit: bool = True) -> list[str]:
        cmd = [_java(), f"-Xmx{heap}", "-XX:+UseSerialGC", "-XX:-UsePerfData"]
        if jit:
            cmd.append("-XX:TieredStopAtLevel=1")
        return [
            *cmd,
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.log4j_path}",
            "-cp",
            f"{self.libs_dir}/*",
            main_class,
            *args,
        ]

    def _tool(self, *args: str) -> str:
        result = subprocess.run(
            self._java_cmd("kafka.tools.StorageTool", *args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            cwd=self.work_dir,
            check=False,
        )
        out = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
        if result.returncode != 0:
            raise ServerError(f"StorageTool {' '.join(args)} failed ({result.returncode}):\n{out}")
        return result.stdout.decode().strip()

    def _format(self) -> None:
        for _ in range(20):
            cluster_id = self._tool("random-uuid").splitlines()[-1].strip()
            # An id starting with '-' would be read as an option by the argument parser.
            if cluster_id and not cluster_id.startswith("-"):
                break
        else:
            raise ServerError("StorageTool random-uuid kept printing ids starting with '-'")
        self._tool("format", "-t", cluster_id, "-c", str(self.properties_path))
        self.cluster_id = cluster_id

    def start(self) -> KafkaServer:
        """Fetch jars if needed, write config, format storage (first time only), start, wait until ready."""
        return super().start()

    def _clear_ports(self) -> None:
        self.port = self.controller_port = None

    def _start_once(self) -> None:
        ensure_kafka_jars(self.libs_dir)
        if self.port is None or self.controller_port is None:
            self.port, self.controller_port = free_ports(2)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.properties_path.write_text("".join(f"{k}={v}\n" for k, v in self._properties().items()))
        self.log4j_path.write_text(_LOG4J)
        if not (self.data_dir / "meta.properties").exists():
            self._format()
        argv = self._java_cmd("kafka.Kafka", str(self.properties_path), heap=self.heap, jit=self.fast_jit)
        argv[1:1] = ["-Xms256m", "-XX:+ExitOnOutOfMemoryError", *self.jvm_options]
        self._spawn("kafka", argv, self.log_path, cwd=self.work_dir)
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self.start_timeout
        try:
            run_async(lambda: _wait_kafka_ready(self.bootstrap, self.port or 0, deadline, process.running))
        except ServerError as exc:
            self._abort()
            raise _fail(str(exc), self.log_path) from None
        except BaseException:
            self._abort()
            raise

    def _abort(self) -> None:
        if self._process is not None:
            self._process.terminate(signal.SIGKILL, 10)
            self._process = None
        self._forget()

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM (controlled shutdown); SIGKILL after `timeout` s (default 30)."""
        if self._process is None:
            return
        self._process.terminate(signal.SIGTERM, self.stop_timeout if timeout is None else timeout)
        self._process = None
        self._forget()

    def kill(self) -> None:
        """SIGKILL the broker (a crash: the next start recovers its logs)."""
        if self._process is None:
            return
        self._process.terminate(signal.SIGKILL, 10)
        self._process = None
        self._forget()

    def restart(self) -> KafkaServer:
        """Stop (controlled; a no-op after kill()) and start again: same ports, same data."""
        self.stop()
        return self.start()

    def __repr__(self) -> str:
        return (
            f"KafkaServer(bootstrap={LOOPBACK}:{self.port}, pid={self.pid}, work_dir={str(self.work_dir)!r})"
        )


class ExternalKafka:
    """A Kafka cluster someone else runs (LYNCHPIN_TEST_KAFKA=host:port[,...]); KafkaServer's read API."""

    external = True
    startup_seconds = 0.0
    pid = None
    running = True

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def create_topics(
        self,
        names: str | Iterable[str],
        partitions: int = 1,
        replication_factor: int = 1,
        config: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        await create_topics(self.bootstrap, names, partitions, replication_factor, config, timeout)

    def start(self) -> ExternalKafka:
        return self

    def stop(self, timeout: float | None = None) -> None:
        return None

    close = stop

    def kill(self) -> None:
        raise ServerError("cannot kill an external Kafka cluster (LYNCHPIN_TEST_KAFKA is set)")

    def restart(self) -> ExternalKafka:
        raise ServerError("cannot restart an external Kafka cluster (LYNCHPIN_TEST_KAFKA is set)")


# ------------------------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.testing.servers",
        description="Start real PostgreSQL and/or Kafka on 127.0.0.1 and run until Ctrl-C or SIGTERM.",
    )
    parser.add_argument(
        "what",
        nargs="+",
        choices=["jars", "postgres", "kafka"],
        help="jars: only fetch the Kafka jars; postgres/kafka: start that server",
    )
    parser.add_argument("--pg-data", help="PostgreSQL data folder (default: a temporary one)")
    parser.add_argument("--pg-port", type=int)
    parser.add_argument("--kafka-dir", help="Kafka work folder (default: a temporary one)")
    parser.add_argument("--kafka-port", type=int)
    parser.add_argument(
        "--benchmark", action="store_true", help="Kafka with full JIT (-XX:TieredStopAtLevel unset)"
    )
    args = parser.parse_args(argv)

    if "jars" in args.what:
        print(ensure_kafka_jars(quiet=False))
    servers: list[PostgresServer | KafkaServer] = []
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if "postgres" in args.what:
            pg = PostgresServer(args.pg_data, args.pg_port)
            servers.append(pg)
            pg.start()
            print(
                f"LYNCHPIN_TEST_PG_DSN={pg.dsn}  # pid {pg.pid}, started in {pg.startup_seconds:.1f}s",
                flush=True,
            )
        if "kafka" in args.what:
            kafka = KafkaServer(args.kafka_dir, args.kafka_port, fast_jit=not args.benchmark)
            servers.append(kafka)
            kafka.start()
            print(
                f"LYNCHPIN_TEST_KAFKA={kafka.bootstrap}  "
                f"# pid {kafka.pid}, started in {kafka.startup_seconds:.1f}s",
                flush=True,
            )
        if servers:
            while not stop.wait(1.0):
                if not all(s.running for s in servers):
                    print("a server exited", file=sys.stderr)
                    return 1
    finally:
        for server in reversed(servers):
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
