#!/usr/bin/env bash
# Install what augur's demo and tests need: the Prometheus/Alertmanager binaries and headless
# Chromium with a CJK font (Debian packages) and a Python virtualenv in .venv with augur and its
# test tools.
# Idempotent: a second run only checks. Used by scripts/demo, scripts/test and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null \
  || need_apt+=(prometheus-alertmanager)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
# The browser tests (tests/browser.py) screenshot report and landing pages in headless Chromium;
# without a CJK font every Chinese character renders as the same empty box.
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need_apt+=(chromium)
[ -n "$(fc-list :lang=zh family 2>/dev/null)" ] || need_apt+=(fonts-noto-cjk)

if ((${#need_apt[@]})); then
  pkgs=$(printf '%s\n' "${need_apt[@]}" | sort -u | tr '\n' ' ')
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "augur needs these Debian/Ubuntu packages: $pkgs" >&2
    echo "install them as root:  apt-get update && apt-get install -y --no-install-recommends $pkgs" >&2
    exit 1
  fi
  echo "installing $pkgs (apt)" >&2
  $sudo apt-get update -qq
  # --no-install-recommends: without it apt drags in ~400 MB of extras.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $pkgs >&2
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "augur needs Python 3.11 or newer; python3 is $(python3 --version)" >&2; exit 1; }

stamp=.venv/.augur-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "creating .venv and installing augur with its test tools (about a minute)" >&2
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
  touch "$stamp"
  echo "augur is .venv/bin/augur; '. .venv/bin/activate' puts it on PATH as plain 'augur'" >&2
fi
