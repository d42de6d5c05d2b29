#!/usr/bin/env bash
# Create .venv and install sergeant with its test tools; a no-op when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python_bin="${PYTHON:-}"
if [[ -z "$python_bin" ]]; then
    for candidate in python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
            python_bin="$candidate"
            break
        fi
    done
fi
if [[ -z "$python_bin" ]]; then
    echo "bootstrap: sergeant needs Python 3.11 or newer on PATH (or set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

if [[ ! -x .venv/bin/python ]]; then
    echo "bootstrap: creating .venv with $python_bin"
    "$python_bin" -m venv .venv
fi

stamp=.venv/.sergeant-installed
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
    echo "bootstrap: installing sergeant and its test tools into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
    echo "$wanted" > "$stamp"
fi
