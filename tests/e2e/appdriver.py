"""Drive the explorer app in headless Chromium: serve it, open it, read what it shows.

Shared by the browser tests (tests/e2e/conftest.py, test_walk.py) and by the script that
takes the README's screenshots (tests/e2e/shoot_docs.py). No pytest here.

    with serve_app(tmp_runs, log_path) as base_url, sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page()
        page.goto(base_url)
        open_page(page, "Train")

The browser is Debian's `chromium` package (apt-get install chromium): Playwright's own
browser download cannot reach its host from this project's machines. The switches turn
off Chromium's background connections (updates, sync, QUIC probes), which a closed
network refuses and which would otherwise show up as requests to foreign hosts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
INSTALL_HINT = (
    f"Chromium not found at {CHROMIUM}: the browser tests drive Debian's chromium package. "
    "Install it with `sudo apt-get update && sudo apt-get install -y chromium` "
    "(or run scripts/ensure_chromium.sh as root)."
)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
LOCAL_SCHEMES = frozenset({"data", "blob", "about"})

# The first script run imports torch and plotly: tens of seconds on a busy 2-core machine.
STARTUP_TIMEOUT_S = 90
PAGE_TIMEOUT_MS = 60_000


# --- the server ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(runs_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    """`streamlit run explorer/app.py` on 127.0.0.1:port, in its own process group.

    The repository root is the working directory, so .streamlit/config.toml applies;
    the command line only overrides the address, the port, headless mode, and the file
    watcher: other work editing the checkout must not put a "rerun?" notice on screen.
    """
    env = {**os.environ, "TINYTF_RUNS": str(runs_dir), "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "explorer/app.py",
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
    ]
    log = log_path.open("wb")
    try:
        # A new session makes the server the leader of its own group: stop_app signals
        # the whole group, training threads' helpers included, and nothing else.
        return subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()  # the child keeps its own copy of the descriptor


def wait_healthy(base_url: str, process: subprocess.Popen, log_path: Path) -> None:
    """Poll /_stcore/health until it answers "ok"; fail early if the server died."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"streamlit exited with {process.returncode} before it was healthy:\n"
                + log_path.read_text(errors="replace")[-3000:]
            )
        try:
            with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200 and reply.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise RuntimeError(
        f"streamlit at {base_url} not healthy after {STARTUP_TIMEOUT_S} s:\n"
        + log_path.read_text(errors="replace")[-3000:]
    )


def stop_app(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it has not gone."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace_s)


@contextlib.contextmanager
def serve_app(runs_dir: Path, log_path: Path) -> Iterator[str]:
    """The app served on a free port for the duration of the block; yields its base URL."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    process = start_app(runs_dir, port, log_path)
    try:
        wait_healthy(base_url, process, log_path)
        yield base_url
    finally:
        stop_app(process)


# --- the browser -----------------------------------------------------------------------------


def launch_chromium(playwright):
    """Debian's Chromium, headless, with its background networking switched off."""
    if not CHROMIUM.exists():
        raise FileNotFoundError(INSTALL_HINT)
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
    )


def foreign_urls(urls: list[str]) -> list[str]:
    """The URLs among `urls` that leave this machine (data:, blob: and about: stay)."""
    foreign = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in LOCAL_SCHEMES:
            continue
        if (parts.hostname or "") not in LOCAL_HOSTS:
            foreign.append(url)
    return foreign


# --- reading and moving around the app -------------------------------------------------------


def wait_for_title(page, title: str) -> None:
    """Wait until the main area's h1 reads `title` (the page's script has drawn it)."""
    page.locator("[data-testid='stMain'] h1", has_text=title).first.wait_for(
        state="visible", timeout=PAGE_TIMEOUT_MS
    )


SETTLED_JS = """() => {
    const app = document.querySelector('[data-testid=stApp]');
    if (app?.getAttribute('data-test-script-state') !== 'notRunning') return false;
    const busy = '[data-testid=stSkeleton], [data-testid=stSkeletonElement], [data-stale=true]';
    return document.querySelector(busy) === null;
}"""


def settle(page, timeout_ms: int = PAGE_TIMEOUT_MS) -> None:
    """Wait until the script run is over and every element is drawn and current.

    Streamlit loads each widget's code on first use and shows a skeleton meanwhile; the
    elements of the previous run stay on screen, marked stale, until replaced.
    """
    page.wait_for_function(SETTLED_JS, timeout=timeout_ms)


def open_page(page, title: str) -> None:
    """Switch pages with the sidebar's link: the same browser session, no reload."""
    nav = page.locator("[data-testid='stSidebarNav'] a", has_text=title).first
    nav.click()
    wait_for_title(page, title)
    settle(page)


def problems(page) -> list[str]:
    """Streamlit exception boxes and traceback text on the page, as readable lines."""
    found = [
        "exception box: " + text.strip()[:300]
        for text in page.locator("[data-testid='stException']").all_inner_texts()
    ]
    body = page.locator("body").inner_text()
    if "Traceback" in body:
        start = body.index("Traceback")
        found.append("traceback text: " + body[start : start + 300])
    return found


# Plotly keeps each chart's traces on its div (`.js-plotly-plot`) as the `data` property.
# Points: every x value of every trace. Last x: the largest (on a loss chart, the last step).
PLOT_STATS_JS = """(title) => {
    for (const plot of document.querySelectorAll('[data-testid=stMain] .js-plotly-plot')) {
        const text = plot.layout?.title?.text ?? '';
        if (!text.includes(title) || !plot.data) continue;
        const xs = plot.data.flatMap(trace => Array.from(trace.x ?? []));
        return { points: xs.length, last_x: xs.length ? Math.max(...xs) : null };
    }
    return null;
}"""


def plot_stats(page, title: str) -> dict | None:
    """{points, last_x} of the chart whose title contains `title`, or None if absent."""
    return page.evaluate(PLOT_STATS_JS, title)


def wait_for_plot(
    page,
    title: str,
    *,
    points_over: int = -1,
    last_x_over: float = float("-inf"),
    timeout_ms: int = PAGE_TIMEOUT_MS,
) -> dict:
    """Wait until that chart has more than `points_over` points and its largest x is
    beyond `last_x_over`; return its {points, last_x}."""
    handle = page.wait_for_function(
        f"""(args) => {{
            const stats = ({PLOT_STATS_JS})(args.title);
            if (!stats || stats.points <= args.points || stats.last_x === null) return false;
            return stats.last_x > args.last_x ? stats : false;
        }}""",
        arg={"title": title, "points": points_over, "last_x": last_x_over},
        timeout=timeout_ms,
    )
    return handle.json_value()


def show_plot(page, title: str) -> None:
    """Scroll the chart whose title contains `title` to the middle of the viewport."""
    page.evaluate(
        """(title) => [...document.querySelectorAll('[data-testid=stMain] .js-plotly-plot')]
            .find(p => (p.layout?.title?.text ?? '').includes(title))
            ?.scrollIntoView({ block: 'center' })""",
        title,
    )


def plot_layout(page, title: str) -> dict | None:
    """The layout and trace shapes of the chart whose title contains `title`."""
    return page.evaluate(
        """(title) => {
            for (const plot of document.querySelectorAll('[data-testid=stMain] .js-plotly-plot')) {
                const text = plot.layout?.title?.text ?? '';
                if (!text.includes(title)) continue;
                return {
                    title: text,
                    xticks: plot.layout.xaxis?.ticktext ?? null,
                    yticks: plot.layout.yaxis?.ticktext ?? null,
                    // _fullData holds z decoded (the app sends it as a typed array).
                    z_rows: (plot._fullData?.[0]?.z ?? plot.data?.[0]?.z)?.length ?? null,
                    shown_ticks: [...plot.querySelectorAll('.xtick text, .ytick text')]
                        .map(t => t.textContent),
                };
            }
            return null;
        }""",
        title,
    )
