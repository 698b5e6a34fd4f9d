"""The browser tests' own helpers, without a browser: the request filter that decides what
counts as leaving the machine, and the message a missing Chromium gives."""

from __future__ import annotations

import appdriver  # tests/e2e/appdriver.py: pytest puts this folder on sys.path
import pytest


def test_foreign_urls_keeps_only_requests_that_leave_the_machine():
    urls = [
        "http://127.0.0.1:8501/static/js/index.js",
        "ws://127.0.0.1:8501/_stcore/stream",
        "http://localhost:8501/_stcore/health",
        "http://[::1]:8501/",
        "data:image/png;base64,iVBORw0KGgo=",
        "blob:http://127.0.0.1:8501/0d7c",
        "about:blank",
        "https://fonts.example.org/font.woff2",
        "http://127.0.0.2.example.net/x.js",  # a look-alike name, not the loopback
        "https://cdn.plot.ly/plotly.min.js",
    ]
    assert appdriver.foreign_urls(urls) == urls[-3:]


def test_missing_chromium_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(appdriver, "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(FileNotFoundError, match="apt-get install -y chromium"):
        appdriver.launch_chromium(playwright=None)
