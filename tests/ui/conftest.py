"""Browser tests: a real server (uvicorn in a thread, fresh SQLite database, the in-process
pipeline) driven by Debian's headless Chromium through Playwright.  They fail, never skip,
when Chromium is missing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from tests.conftest import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync",
]  # fmt: skip
ARTIFACTS = REPO_ROOT / "test-artifacts"
PASSWORD = "correct horse battery"


@dataclass
class LiveServer:
    url: str
    app: Any
    engine: Any
    admin_key: str
    shop_id: int
    shop_key: str

    def api(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"X-API-Key": key or self.admin_key}, timeout=30
        )

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    import uvicorn

    from api.main import create_app
    from store import users
    from store.access import SYSTEM, create_api_key
    from store.customers import create_shop
    from store.db import dispose_engines, get_engine, migrate
    from store.models import Role, ShopCreate
    from store.settings import Settings

    url = f"sqlite:///{tmp_path / 'ui.db'}"
    migrate(url)
    settings = Settings(environment="test", database_url=url, data_dir=tmp_path / "data")
    pipeline = None
    try:
        from workers.pipeline import pipeline_for
    except ImportError:
        pipeline_for = None  # type: ignore[assignment]
    if pipeline_for is not None:
        pipeline = pipeline_for(settings)
    app = create_app(settings, pipeline=pipeline)
    engine = get_engine(url)
    with Session(engine) as s:
        shop = create_shop(session=s, shop_in=ShopCreate(code="S01", name="High Street"),
                           actor=SYSTEM)  # fmt: skip
        _, admin_key = create_api_key(session=s, name="test-admin", role=Role.admin)
        _, shop_key = create_api_key(session=s, name="till-S01", role=Role.shop, shop_id=shop.id)
        users.create_user(session=s, username="ana", password=PASSWORD, role=Role.analyst,
                          actor=SYSTEM)  # fmt: skip
        users.create_user(session=s, username="till", password=PASSWORD, role=Role.shop,
                          shop_id=shop.id, actor=SYSTEM)  # fmt: skip
        s.commit()
        shop_id = int(shop.id)  # type: ignore[arg-type]
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            timeout_graceful_shutdown=1)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail(f"the test server did not start on port {port}")
        time.sleep(0.05)
    yield LiveServer(url=f"http://127.0.0.1:{port}", app=app, engine=engine,
                     admin_key=admin_key, shop_id=shop_id, shop_key=shop_key)  # fmt: skip
    server.should_exit = True
    thread.join(timeout=10)
    if pipeline is not None and hasattr(pipeline, "shutdown"):
        pipeline.shutdown()
    dispose_engines()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium for the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """A fresh browser context per test; JavaScript errors fail the test."""
    context = chromium.new_context(viewport={"width": 1400, "height": 950})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def login(page: Any, base: str, username: str, next_path: str) -> None:
    page.goto(f"{base}/login?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{next_path}*")


def settled(page: Any) -> None:
    """Wait until the page's deferred scripts have run (readyState 'complete'): an element
    can appear while the document still parses, before the keyboard handlers exist, and a
    key pressed then is lost (seen under load after a reload)."""
    page.wait_for_function("() => document.readyState === 'complete'")


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
