"""Fixtures of the browser tests: the app served from a tmp runs folder, headless Chromium,
and a page that records every request it makes.

The screenshots and the two timings the tests measure are listed at the end of pytest's
output by `pytest_terminal_summary`, so CI's log shows them without `-s`.
"""

from __future__ import annotations

import os
from pathlib import Path

import appdriver  # tests/e2e/appdriver.py: pytest puts this folder on sys.path
import pytest

ARTIFACTS = appdriver.REPO_ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
SERVER_LOG = ARTIFACTS / "streamlit.log"
VIEWPORT = {"width": 1400, "height": 1000}

_REPORT = pytest.StashKey[dict]()


class E2EReport:
    """What the browser tests hand to the terminal summary: screenshots and timings."""

    def __init__(self, store: dict) -> None:
        self._store = store
        store.setdefault("screenshots", [])
        store.setdefault("timings", {})

    def screenshot(self, page, name: str) -> Path:
        """Save the viewport as test-artifacts/screenshots/<name>.png and list it."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path))
        self._store["screenshots"].append(path)
        return path

    def timing(self, label: str, milliseconds: float) -> None:
        self._store["timings"][label] = milliseconds


@pytest.fixture
def e2e_report(request) -> E2EReport:
    return E2EReport(request.config.stash.setdefault(_REPORT, {}))


# Module scope, not session: Playwright's sync API refuses to start while another instance
# runs in the same thread, so the browser must be gone before any later test file (such as
# tests/test_many_users.py) starts its own.


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, request):
    """The app, served by `streamlit run explorer/app.py` on a free port of 127.0.0.1.

    TINYTF_RUNS points at a fresh tmp folder, so the tests never see or touch runs/. The
    server is stopped (SIGTERM, then SIGKILL, to its whole process group) when the test
    module ends, whatever its tests did.
    """
    runs = tmp_path_factory.mktemp("e2e_runs")
    ARTIFACTS.mkdir(exist_ok=True)
    request.config.stash.setdefault(_REPORT, {})["server_log"] = SERVER_LOG
    port = appdriver.free_port()
    process = appdriver.start_app(runs, port, SERVER_LOG)
    try:
        base_url = f"http://127.0.0.1:{port}"
        appdriver.wait_healthy(base_url, process, SERVER_LOG)
        yield base_url
    finally:
        appdriver.stop_app(process)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright; fails (never skips) when missing."""
    if not appdriver.CHROMIUM.exists():
        pytest.fail(appdriver.INSTALL_HINT, pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "playwright is not installed: .venv/bin/pip install -r requirements-dev.txt "
            "(the Python package only; the browser is Debian's chromium)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = appdriver.launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


class AppPage:
    """A Playwright page on the app, and every URL its context requested (websockets too)."""

    def __init__(self, page, base_url: str, urls: list[str], server_log: Path) -> None:
        self.page = page
        self.base_url = base_url
        self.urls = urls
        self.server_log = server_log

    def foreign(self) -> list[str]:
        return appdriver.foreign_urls(self.urls)

    def server_tracebacks(self) -> str:
        """The server's output from its first traceback on ("" when there is none)."""
        text = self.server_log.read_text(errors="replace")
        return text[text.index("Traceback") :][:2000] if "Traceback" in text else ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, for the `app` fixture's teardown."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def app(browser, app_url, request) -> AppPage:
    """A fresh browser context (no cookies, no cache) at 1400x1000, recording requests."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(appdriver.PAGE_TIMEOUT_MS)
    urls: list[str] = []
    context.on("request", lambda req: urls.append(req.url))
    page = context.new_page()
    page.on("websocket", lambda ws: urls.append(ws.url))
    try:
        yield AppPage(page, app_url, urls, SERVER_LOG)
        failed = getattr(request.node, "report_call", None)
        if failed is not None and failed.failed:
            E2EReport(request.config.stash.setdefault(_REPORT, {})).screenshot(
                page, f"FAILED_{request.node.name}"
            )
    finally:
        context.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    store = config.stash.get(_REPORT, None)
    if not store:
        return
    write = terminalreporter.write_line
    terminalreporter.section("browser tests: screenshots and timings")
    here = Path(os.getcwd())
    for path in store.get("screenshots", []):
        shown = path.relative_to(here) if path.is_relative_to(here) else path
        write(f"screenshot: {shown}")
    for label, milliseconds in store.get("timings", {}).items():
        write(f"timing: {label}: {milliseconds:,.0f} ms (browser clock)")
    log = store.get("server_log")
    if log is not None and exitstatus != 0:
        write(f"streamlit server log: {log}")
