#!/usr/bin/env bash
# Install what the suite and the reference deployment need on a fresh Debian 12 machine (as root),
# then a virtualenv in .venv with the suite, and Allure 3 (the HTML report, Node.js: no JVM) in
# tools/node_modules. Idempotent; quick when everything is there.
#   --no-browser   skip Debian's chromium (only the suite's own report test needs it; CI installs it)
set -euo pipefail
cd "$(dirname "$0")/.."

BROWSER=1
for arg in "$@"; do
  case "$arg" in
    --no-browser) BROWSER=0 ;;
    *) echo "usage: bash scripts/bootstrap.sh [--no-browser]" >&2; exit 4 ;;
  esac
done

APT_PACKAGES=(docker.io mmdebstrap openssh-client iproute2 curl ca-certificates git python3 python3-venv)
[ "$BROWSER" = 1 ] && APT_PACKAGES+=(chromium)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# Node.js 20+ and npm for Allure 3: the machine's own when present (Debian 12's nodejs is 18).
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q -U pip
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-* && touch "$stamp"
fi
# Allure 3, pinned by tools/package.json and tools/package-lock.json (`npm ci`: exactly the lock).
# The audit does not need it: with an older Node.js the suite is ready, without the HTML report.
node_major=$(node -p 'process.versions.node.split(".")[0]')
npm_stamp=tools/node_modules/.installed-$(sha256sum tools/package-lock.json | cut -c1-12)
if [ "$node_major" -lt 20 ]; then
  echo "bootstrap: Allure 3 (python -m reports) needs Node.js 20 or later, this machine has" \
       "$(node --version): not installed" >&2
elif [ ! -f "$npm_stamp" ] || [ ! -x tools/node_modules/.bin/allure ]; then
  echo "bootstrap: installing Allure 3 into tools/node_modules"
  (cd tools && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$npm_stamp"
fi
ready=".venv"
[ -x tools/node_modules/.bin/allure ] && ready+=", tools/node_modules/.bin/allure"
[ "$BROWSER" = 1 ] && ready+=", chromium"
echo "bootstrap: ready ($ready)"
