#!/usr/bin/env bash
# Debian packages the book and its tests use:
#   libjs-mathjax  MathJax served from a local copy, so the book's equations render offline
#   chromium       headless browser for the book's rendering test
# Without root or apt-get this only says what is missing (the book then shows raw TeX and the
# browser test is skipped with its reason).
set -uo pipefail
want=()
[ -f /usr/share/javascript/mathjax/MathJax.js ] || want+=(libjs-mathjax)
command -v chromium >/dev/null 2>&1 || want+=(chromium)
[ "${#want[@]}" -eq 0 ] && { echo "system packages: all present"; exit 0; }
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else
        echo "system packages missing (no root): ${want[*]}; install them with apt-get to get offline equations and the browser test" >&2
        exit 0
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "not a Debian system: install ${want[*]} (or npm mathjax@2 and a Chromium) by hand" >&2
    exit 0
fi
$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" \
    && echo "installed: ${want[*]}" || echo "could not install ${want[*]}: the tests that need them will be skipped" >&2
