#!/usr/bin/env bash
# Debian's chromium for the report's browser test (tests/test_report.py), installed when missing.
# No browser is downloaded at test time: Playwright drives this binary.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "chromium is missing and this user cannot install it: apt-get install chromium as root" >&2
  exit 1
fi
echo "installing Debian's chromium (for the report's browser test)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null
}
chromium --version
