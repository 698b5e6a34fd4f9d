"""Network exposure: the settings the app really runs with, read the way Streamlit reads
them, and a real server started with nothing but the repository's config and a port.

- Streamlit's own config machinery (`streamlit.config`), pointed at the repository root
  with no global ~/.streamlit and no STREAMLIT_* variables, must say: listen on localhost,
  XSRF protection on, CORS protection on, a 20 MB upload limit that matches the Data
  page's own, no usage statistics, error details without tracebacks, no static file
  serving, no rerun on save. Each value must come from .streamlit/config.toml (parsed
  with tomllib too), not from a default that a Streamlit upgrade could change.
- The real server, started from the repository root with only --server.port: every
  socket it listens on is a loopback address (read from /proc/net/tcp and tcp6), and an
  upload PUT without the XSRF token is refused with 403.
- The container: nothing in compose.yaml or the Dockerfile turns those settings off.
  (That compose publishes its ports on 127.0.0.1 only is test_docker's
  test_compose_publishes_ports_on_loopback_only.)
- No page fetches from the internet: no module under explorer/ or pages/ imports a
  network client or holds an http(s) URL. (The browser tests record every request the
  pages make: test_walk, and this suite's soak in test_many_users.)
"""

from __future__ import annotations

import ast
import ipaddress
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import tomllib  # standard from Python 3.11, which Streamlit 1.67 itself needs
import yaml
from streamlit import config

from explorer.corpus_view import MAX_UPLOAD_BYTES

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = REPO_ROOT / ".streamlit" / "config.toml"

EXPECTED = {
    "server.address": "localhost",
    "server.enableXsrfProtection": True,
    "server.enableCORS": True,
    "server.maxUploadSize": 20,
    "server.headless": True,
    "server.runOnSave": False,
    "server.enableStaticServing": False,
    "browser.gatherUsageStats": False,
    "client.showErrorDetails": "type",
    "global.developmentMode": False,
}
# Written in config.toml on purpose (the rest may be Streamlit's defaults).
SET_IN_FILE = (
    "server.address",
    "server.enableXsrfProtection",
    "server.maxUploadSize",
    "browser.gatherUsageStats",
    "client.showErrorDetails",
)


@pytest.fixture
def repo_options(tmp_path: Path, monkeypatch):
    """Streamlit's config as `streamlit run` from the repository root would load it."""
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("HOME", str(tmp_path))  # no global ~/.streamlit/config.toml
    for key in [k for k in os.environ if k.startswith("STREAMLIT_")]:
        monkeypatch.delenv(key)
    config.get_config_options(force_reparse=True)
    yield config.get_option
    monkeypatch.undo()
    config.get_config_options(force_reparse=True)


def test_effective_streamlit_settings(repo_options):
    effective = {key: repo_options(key) for key in EXPECTED}
    assert effective == EXPECTED
    for key in SET_IN_FILE:
        assert config.get_where_defined(key) == str(CONFIG_FILE), key


def test_config_file_says_the_same_and_fetches_no_font():
    data = tomllib.loads(CONFIG_FILE.read_text(encoding="utf-8"))
    for key in SET_IN_FILE:
        section, name = key.split(".")
        assert data[section][name] == EXPECTED[key], key
    assert data["server"]["maxUploadSize"] * 2**20 == MAX_UPLOAD_BYTES  # the Data page's own
    theme = data.get("theme", {})
    assert "fontFaces" not in theme  # a font face would be a URL to fetch
    assert not any("://" in str(value) for value in theme.values())


# ---------------------------------------------------------------------------------------
# A real server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_addresses(port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Local addresses of the sockets listening on `port`, from /proc/net/tcp and tcp6."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            # The kernel prints each 32-bit word in host (little-endian) byte order.
            words = [bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, width, 8)]
            found.append(ipaddress.ip_address(b"".join(words)))
    return found


@pytest.fixture
def repo_server(tmp_path: Path):
    """`streamlit run explorer/app.py --server.port P` from the repository root."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env.update(HOME=str(tmp_path), TINYTF_RUNS=str(tmp_path / "runs"))
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "explorer/app.py", "--server.port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.2)
        yield port
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=20)
        log.close()


def test_server_listens_on_loopback_only_and_refuses_uploads_without_xsrf(repo_server):
    addresses = listening_addresses(repo_server)
    assert addresses, "no listening socket found"
    assert all(address.is_loopback for address in addresses), addresses

    request = urllib.request.Request(
        f"http://127.0.0.1:{repo_server}/_stcore/upload_file/some-session/some-file",
        data=b"text",
        method="PUT",
        headers={"Content-Type": "text/plain"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403


# ---------------------------------------------------------------------------------------
# The container and the pages

# Environment variables and flags that would undo one of the settings above.
LOOSENING = re.compile(
    r"ENABLE_XSRF_PROTECTION|enableXsrfProtection|ENABLE_CORS|enableCORS|MAX_UPLOAD_SIZE"
    r"|maxUploadSize|ENABLE_STATIC_SERVING|enableStaticServing|SHOW_ERROR_DETAILS"
    r"|showErrorDetails|DEVELOPMENT_MODE|developmentMode"
)


def test_the_container_keeps_the_settings():
    compose = yaml.safe_load((REPO_ROOT / "docker" / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        assert not [k for k in environment if LOOSENING.search(k)], name
        assert not LOOSENING.search(" ".join(map(str, service.get("command") or []))), name
        if "STREAMLIT_BROWSER_GATHER_USAGE_STATS" in environment:
            assert str(environment["STREAMLIT_BROWSER_GATHER_USAGE_STATS"]) == "false"
    dockerfile = (REPO_ROOT / "docker" / "Dockerfile").read_text()
    assert not LOOSENING.search(dockerfile)
    assert "STREAMLIT_BROWSER_GATHER_USAGE_STATS=false" in dockerfile


NETWORK_MODULES = {"urllib.request", "requests", "httpx", "http.client", "aiohttp", "socket"}
URL = re.compile(r"https?://", re.IGNORECASE)


def app_sources() -> list[Path]:
    return sorted([*(REPO_ROOT / "explorer").rglob("*.py"), *(REPO_ROOT / "pages").glob("*.py")])


@pytest.mark.parametrize("path", app_sources(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_page_reaches_the_internet(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names = {node.module or ""} | {f"{node.module}.{a.name}" for a in node.names}
        else:
            names = set()
        assert not names & NETWORK_MODULES, (path.name, node.lineno, names)
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and id(node) not in docstrings:
            assert not URL.search(node.value), (path.name, node.lineno, node.value[:80])
