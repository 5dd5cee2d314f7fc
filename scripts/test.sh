#!/usr/bin/env bash
# Install everything the tests need (into .venv, plus Debian's chromium for the browser tests) and run them all:
#   bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# chromium: the browser tests and the report's PDF; poppler-utils: pdftoppm turns that PDF into pages to check
if [ ! -x /usr/bin/chromium ] || ! command -v pdftoppm >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium poppler-utils >/dev/null
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
.venv/bin/python -m ruff check .
.venv/bin/python -m mypy
# Tiny models: one torch thread per process avoids oversubscribing 2 cores (the e2e server is a second process).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest "$@"
