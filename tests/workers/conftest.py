"""Real broker, real worker processes, real databases.

- Redis on 127.0.0.1:6379 (a dedicated DB number, queue names unique to this test run), or a
  private ``redis-server`` on a free port when a test stops the broker;
- a fresh PostgreSQL database per test on the shared server, or a private PostgreSQL
  cluster (``initdb`` + ``pg_ctl`` on a free port) when a test restarts the database;
- workers started with ``workers.app.run_worker`` (what ``sliplink worker`` runs) in their
  own process group, so a test can SIGKILL a worker with all its children.

Nothing here skips: without Redis or PostgreSQL the tests fail.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import create_engine, text

from tests.conftest import PG_ADMIN_URL, REPO_ROOT

SAMPLE_SET = REPO_ROOT / "sample_slips" / "set"
REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 13
PG_BIN = Path("/usr/lib/postgresql/15/bin")
RUN_ID = uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], object], *, timeout: float, what: str, every: float = 0.25):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def model_path() -> Path | None:
    """The embedding model for the workers: ``SLIPLINK_TEST_MODEL_PATH`` or the shipped one."""
    env = os.environ.get("SLIPLINK_TEST_MODEL_PATH")
    if env:
        return Path(env)
    if (REPO_ROOT / "cv" / "models" / "default.npz").is_file():
        return None
    pytest.fail("no embedding model: cv/models/default.npz is missing")


def slip_images(n: int) -> list[bytes]:
    """``n`` distinct real slip scans from ``sample_slips/set``; beyond the set's size, the
    same scans cropped by a few pixels (new bytes, same handwriting)."""
    files = sorted(p for p in SAMPLE_SET.iterdir() if p.suffix.lower() in {".jpg", ".png"})
    if not files:
        pytest.fail(f"no sample slips in {SAMPLE_SET}")
    out: list[bytes] = []
    for i in range(n):
        path = files[i % len(files)]
        round_ = i // len(files)
        if round_ == 0:
            out.append(path.read_bytes())
            continue
        img = Image.open(path).convert("L")
        cut = 2 * round_
        buf = io.BytesIO()
        img.crop((cut, cut, img.width - cut, img.height - cut)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


# ---------------------------------------------------------------- redis
def _redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="session")
def shared_broker_url() -> str:
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    if not _redis_ping(url):
        pytest.fail(f"Redis is not reachable at {url}")
    return url


class PrivateRedis:
    """A throw-away redis-server that a test may stop and start again (same port)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None  # type: ignore[type-arg]
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: _redis_ping(self.url), timeout=10, what="private redis")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    r = PrivateRedis(tmp_path)
    r.start()
    yield r
    r.stop()


# ---------------------------------------------------------------- postgres
def _create_database(admin_url: str) -> str:
    from store.db import migrate

    name = f"sliplink_wtest_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - fail, never skip
        pytest.fail(f"PostgreSQL is not reachable at {admin_url}: {exc}")
    finally:
        admin.dispose()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    migrate(url)
    return url


def _drop_database(admin_url: str, url: str) -> None:
    from store.db import dispose_engines

    dispose_engines()
    name = url.rsplit("/", 1)[1]
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated database on the shared PostgreSQL server."""
    url = _create_database(PG_ADMIN_URL)
    yield url
    _drop_database(PG_ADMIN_URL, url)


class PrivatePostgres:
    """A private PostgreSQL cluster (initdb) that a test may restart."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "pgdata"
        self.sock = workdir / "pgsock"
        self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = " ".join(args)
        if os.geteuid() == 0:  # initdb refuses root
            full = ["su", "postgres", "-s", "/bin/sh", "-c", cmd]
        else:
            full = ["/bin/sh", "-c", cmd]
        done = subprocess.run(full, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            pytest.fail(f"{cmd} failed: {done.stderr[-2000:]}")

    def init(self) -> None:
        if not (PG_BIN / "initdb").exists():
            pytest.fail(f"PostgreSQL binaries not found in {PG_BIN}")
        self.sock.mkdir(parents=True)
        self.dir.parent.chmod(0o777)
        self.sock.chmod(0o777)
        if os.geteuid() == 0:
            shutil.chown(self.sock, "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.dir), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", ">/dev/null")  # fmt: skip
        self.start()

    def start(self) -> None:
        opts = f'"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off"'
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.dir), "-o", opts, "-w",
                  "-l", str(self.dir.parent / "pg.log"), "start", ">/dev/null")  # fmt: skip

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.dir), "-m", "immediate", "-w",
                  "stop", ">/dev/null")  # fmt: skip


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[PrivatePostgres]:
    # a world-traversable directory: the postgres user owns the cluster files
    base = Path("/tmp") / f"sliplink-pg-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    pg = PrivatePostgres(base)
    pg.init()
    yield pg
    from store.db import dispose_engines

    dispose_engines()
    try:
        pg.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- workers
class Worker:
    """``run_worker`` in a subprocess of its own process group."""

    def __init__(self, env: dict[str, str], log: Path, *, concurrency: int) -> None:
        self.env, self.log, self.concurrency = env, log, concurrency
        self.proc: subprocess.Popen | None = None  # type: ignore[type-arg]

    def start(self) -> Worker:
        code = (
            "from workers.app import run_worker; "
            f"run_worker(queues=[], concurrency={self.concurrency}, loglevel='INFO')"
        )
        self.fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO_ROOT, env=self.env, stdout=self.fh,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_for(lambda: b" ready." in self.log.read_bytes() or self.proc.poll() is not None,
                 timeout=60, what="the worker to start")  # fmt: skip
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited: {self.log.read_text()[-3000:]}")
        return self

    def kill(self) -> None:
        """SIGKILL the worker and all its pool processes at once."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.fh.close()


@pytest.fixture
def worker_env(tmp_path: Path) -> Callable[..., dict[str, str]]:
    def make(*, database_url: str, broker_url: str, prefix: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPLINK_")}
        mp = model_path()
        env |= {
            "PYTHONPATH": str(REPO_ROOT),
            "SLIPLINK_ENVIRONMENT": "test",
            "SLIPLINK_DATABASE_URL": database_url,
            "SLIPLINK_BROKER_URL": broker_url,
            "SLIPLINK_DATA_DIR": str(tmp_path / "data"),
            "SLIPLINK_QUEUE_PREFIX": prefix,
            # short timings so lost work is found within the test's patience
            "SLIPLINK_PENDING_GRACE_SECONDS": "2",
            "SLIPLINK_LEASE_SECONDS": "6",
            "SLIPLINK_SWEEP_SECONDS": "2",
            "SLIPLINK_MAX_ATTEMPTS": "5",
            "OMP_NUM_THREADS": "1",
        }
        if mp is not None:
            env["SLIPLINK_MODEL_PATH"] = str(mp)
        return env

    return make


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(env: dict[str, str], *, concurrency: int = 2) -> Worker:
        w = Worker(env, tmp_path / f"worker{len(started)}.log", concurrency=concurrency)
        started.append(w)
        return w.start()

    yield start
    for w in started:
        w.stop()


def queue_prefix() -> str:
    return f"t{RUN_ID}-{uuid.uuid4().hex[:4]}-"
