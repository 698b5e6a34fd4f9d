#!/usr/bin/env bash
# Make sure Debian's chromium is at /usr/bin/chromium: the browser tests (tests/e2e) drive it
# through Playwright, and figure export (kaleido) renders with it. Playwright's own browser
# download does not work on this project's machines, so the browser comes from apt.
#
# As root (CI, containers) it installs the package when missing; as anyone else it only says
# how, and the browser tests then fail with the same instruction.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure_chromium: $CHROMIUM is missing; the browser tests need it. Install it with:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y chromium" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: $CHROMIUM is missing and there is no apt-get here;" \
        "install Chromium at $CHROMIUM by this system's own means" >&2
    exit 1
fi

echo "ensure_chromium: installing Debian's chromium (apt-get)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
"$CHROMIUM" --version
