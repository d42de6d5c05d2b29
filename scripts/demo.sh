#!/usr/bin/env bash
# The main job: install sergeant into .venv and run the demo on the embedded local broker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/sergeant demo "$@"
