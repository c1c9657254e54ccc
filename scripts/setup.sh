#!/usr/bin/env bash
# setup.sh — install what is missing (Debian packages, Python test packages),
# then configure and build birdbone. Sourced by scripts/quickstart and scripts/test.
#
# Environment: BB_BUILD_DIR (default build), BB_CMAKE_ARGS (extra cmake arguments),
#              BB_JOBS (default: all cores), BB_NO_INSTALL=1 to skip installing.
set -euo pipefail

BB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BB_BUILD_DIR="${BB_BUILD_DIR:-$BB_ROOT/build}"
BB_JOBS="${BB_JOBS:-$(nproc)}"

# Debian packages the build and the tests need.
BB_DEBS=(build-essential cmake pkg-config openmpi-bin libopenmpi-dev libscalapack-openmpi-dev
         libopenblas-dev liblapacke-dev libhdf5-openmpi-dev hdf5-tools libyaml-dev libpmix-dev
         libpcre2-dev slurm-wlm munge python3 python3-pip)
# Only the test suite needs these (sanitizer and fuzzer builds, plots).
BB_TEST_DEBS=(clang libclang-rt-14-dev gnuplot-nox)
BB_PIP=(numpy gguf safetensors ml_dtypes tokenizers)

bb_say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

bb_missing_debs() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    echo "${missing[@]:-}"
}

bb_install_debs() {
    [ "${BB_NO_INSTALL:-0}" = 1 ] && return 0
    command -v dpkg-query >/dev/null || { echo "warning: not a Debian system; install the equivalents of: $*" >&2; return 0; }
    local missing
    missing="$(bb_missing_debs "$@")"
    [ -z "$missing" ] && return 0
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { echo "error: missing packages ($missing) and not root; run: sudo apt-get install $missing" >&2; exit 1; }
        sudo="sudo"
    fi
    bb_say "installing Debian packages: $missing"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

bb_install_pip() {
    [ "${BB_NO_INSTALL:-0}" = 1 ] && return 0
    local py="${PYTHON:-python3}" missing=() m
    for m in "${BB_PIP[@]}"; do "$py" -c "import $m" 2>/dev/null || missing+=("$m"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    bb_say "installing Python packages for the tests: ${missing[*]}"
    "$py" -m pip install --quiet --disable-pip-version-check "${missing[@]}" 2>/dev/null ||
        "$py" -m pip install --quiet --disable-pip-version-check --break-system-packages "${missing[@]}"
}

bb_build() {
    local dir="$1"; shift
    # nvcc may be installed without being on PATH.
    [ -x /usr/local/cuda/bin/nvcc ] && case ":$PATH:" in *:/usr/local/cuda/bin:*) ;; *) export PATH="$PATH:/usr/local/cuda/bin";; esac
    bb_say "configuring $dir"
    # The tests use the python3 that the pip packages went into.
    cmake -S "$BB_ROOT" -B "$dir" -DPython3_EXECUTABLE="$(command -v "${PYTHON:-python3}")" "$@" ${BB_CMAKE_ARGS:-} >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; exit 1; }
    sed -n '/birdbone .* configuration/,/fuzz targets/p' "$dir.configure.log" | sed 's/^-- //'
    bb_say "building $dir"
    cmake --build "$dir" -j "$BB_JOBS" >"$dir.build.log" 2>&1 || { grep -E -A3 'error' "$dir.build.log" | head -60; tail -20 "$dir.build.log"; exit 1; }
    grep -E 'warning:' "$dir.build.log" | head -20 || true
}

# mpirun as root needs these; beyond the core count ranks must yield.
if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_mpi_yield_when_idle=1
export OMPI_MCA_rmaps_base_oversubscribe=1
