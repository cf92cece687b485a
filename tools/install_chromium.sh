#!/bin/sh
# Chromium from Debian's packages (and DejaVu fonts for the canvas captions) for tests/test_serve_browser.py, which
# drives it with Playwright through executable_path: no browser download. Idempotent and quiet: nothing to do when
# /usr/bin/chromium is there; without apt-get or root, or when the install fails, one line says so and it exits 0
# (the browser test then skips, saying why).
set -e
[ -x /usr/bin/chromium ] && exit 0
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "tools/install_chromium.sh: no apt-get or not root; the browser test will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq >/dev/null &&
       apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }; then
    echo "tools/install_chromium.sh: apt-get install chromium failed; the browser test will skip" >&2
fi
exit 0
