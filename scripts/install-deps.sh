#!/usr/bin/env bash
# Installs what qtl needs to build and test, from Debian's packages.
# Idempotent and quiet when everything is there; needs root (or sudo) otherwise.
# `install-deps.sh interop` adds what `make interop` needs (a virtualenv and pip).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libjansson-dev libcmocka-dev clang libclang-rt-14-dev libomp-14-dev python3
      python3-venv  # make test's Python package tests (a venv, pip from PyPI)
      mpich libmpich-dev) # MPICH, pinned (mpi-default-dev is OpenMPI on Debian 12): one process per rank
[ "${1:-}" = interop ] && pkgs+=(python3-pip)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
