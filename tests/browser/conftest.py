"""Real-browser fixtures: a Streamlit server on a free port, Debian's Chromium driven by Playwright.

The tests skip (with the reason shown) only when no Chromium binary is installed; CI installs it.
Screenshots of failing tests land in ``artifacts/browser/``.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = os.environ.get("PEFTLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, port: int | None = None):
    port = port or _free_port()
    env = {**os.environ, "PEFTLAB_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    log = open(data_dir / f"server-{port}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
                             "--server.address", "127.0.0.1", "--server.port", str(port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=1).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"streamlit did not start; see {data_dir}")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("browser-data")
    proc, url = start_server(data)
    yield {"url": url, "data": data, "proc": proc}
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("PEFTLAB_REQUIRE_BROWSER"):
            pytest.fail(f"no Chromium at {CHROMIUM}, and PEFTLAB_REQUIRE_BROWSER is set (CI must run these)")
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium (CI does) to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    ctx.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


IDLE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return !!app && app.dataset.testConnectionState === 'CONNECTED'
    && app.dataset.testScriptState === 'notRunning'
    && document.querySelectorAll('[data-testid="stSkeleton"]').length === 0
    && document.querySelectorAll('[data-testid="stMain"] h1').length > 0;
}"""


def wait_idle(pg, timeout: float = 60_000) -> None:
    """Wait on Streamlit's own state, not a sleep: connected, script not running, nothing still a skeleton.

    Two consecutive idle observations 100 ms apart, so a rerun that is just being scheduled is not
    mistaken for the end of the run.
    """
    for _ in range(2):
        pg.wait_for_function(IDLE_JS, timeout=timeout, polling=100)
        pg.wait_for_timeout(100)
    pg.wait_for_function(IDLE_JS, timeout=timeout, polling=100)


def assert_no_exception(pg, what: str) -> None:
    boxes = pg.locator('[data-testid="stException"]')
    assert boxes.count() == 0, f"{what}: exception box on the page: {boxes.first.inner_text()[:500]}"
