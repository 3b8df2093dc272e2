#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run the whole test suite:
#   - Debian packages for the STAC API stack (PostgreSQL 15 + PostGIS 3) and the browser
#     tests (Chromium), when root;
#   - .venv with the package and its dev extras (tests, ruff, mypy);
#   - .venv-stack with stac-fastapi-pgstac + titiler-pgstac (their pins conflict with
#     titiler 2.4 in .venv, so they live apart; see scripts/stac_stack.py).
# Usage: ./scripts/setup-and-test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEBS="postgresql-15 postgresql-15-postgis-3 chromium chromium-driver"
if ! dpkg -s $DEBS >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $DEBS >/dev/null
  else
    echo "note: $DEBS not all installed and not root: the STAC API and browser tests will skip" >&2
  fi
fi
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
export MOSAIC_STAC_STACK_VENV="$PWD/.venv-stack"
PYTHON=.venv/bin/python ./scripts/stac-stack --install "$MOSAIC_STAC_STACK_VENV"
# lint and types first: cheap, and a failure here needs no servers to explain it
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy mosaic_assembler
exec .venv/bin/python -m pytest -q "$@"
