#!/usr/bin/env bash
# The whole bench in one command: `bench/run.sh` (full) or `bench/run.sh --smoke`.
# Extra arguments go to `python -m bench` (see `python -m bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m bench "$@"
