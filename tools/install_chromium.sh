#!/bin/sh
# Chromium from Debian's packages, for tests/test_serve_browser.py (driven by Playwright with executable_path; no
# browser download; DejaVu for the canvas captions). Idempotent and quiet: does nothing when /usr/bin/chromium is there; without root or apt-get
# it says so in one line and exits 0, and the browser test then skips with its reason.
set -e
[ -x /usr/bin/chromium ] && exit 0
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "tools/install_chromium.sh: no apt-get or not root; the browser test will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }; then
    echo "tools/install_chromium.sh: apt-get install chromium failed; the browser test will skip" >&2
fi
exit 0
