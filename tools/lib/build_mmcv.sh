# Build mmcv 2.1.0 with ops from its PyPI source against an installed torch.
# Sourced by tools/setup_env.sh and tools/offline_gpu_env.sh.

MMCV_VERSION=2.1.0
MMCV_SDIST_SHA256=d387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f
MMCV_SDIST_URL=https://files.pythonhosted.org/packages/a7/19/f97f0fd4d432113a232e75f965335be6b7bb6557ae9faf8051e9a012cadd/mmcv-2.1.0.tar.gz

# download_mmcv_sdist FILE: fetch the source archive from PyPI and check it.
download_mmcv_sdist() {
    curl --fail --silent --show-error --location -o "$1" "${MMCV_SDIST_URL}"
    echo "${MMCV_SDIST_SHA256}  $1" | sha256sum --check --quiet
}

# build_mmcv_wheel PYTHON SDIST WHEEL_DIR: build the wheel into WHEEL_DIR.
# CUDA kernels are compiled when PYTHON's torch finds a GPU or FORCE_CUDA=1.
build_mmcv_wheel() {
    local python="$1" sdist="$2" wheel_dir="$3" work include_dirs dir
    # The build runs in another folder, so relative paths are made absolute
    # (without resolving links: a virtual environment's python is one).
    [[ "${python}" != */* ]] || python="$(realpath -s "${python}")"
    sdist="$(realpath -s "${sdist}")"
    wheel_dir="$(realpath -s "${wheel_dir}")"
    echo "${MMCV_SDIST_SHA256}  ${sdist}" | sha256sum --check --quiet
    work="$(mktemp -d)"
    tar -xzf "${sdist}" -C "${work}"
    # torch 2.14's headers use C++20 features, but mmcv 2.1.0's setup.py sets C++14/17.
    sed -i -e 's/c++14/c++20/g' -e 's/c++17/c++20/g' "${work}/mmcv-${MMCV_VERSION}/setup.py"
    # For CUDA kernels: torch's CUDA headers include cusparse.h, cublas_v2.h and
    # others, which pip installs beside torch (nvidia/*/include), not always in
    # the CUDA toolkit.
    include_dirs="$("${python}" -c 'import glob, os, torch
if torch.cuda.is_available() or os.getenv("FORCE_CUDA") == "1":
    root = os.path.dirname(os.path.dirname(torch.__file__))
    print(" ".join(sorted(glob.glob(os.path.join(root, "nvidia", "*", "include")))))')"
    for dir in ${include_dirs}; do
        NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:-} -I${dir}"
        CPATH="${CPATH:+${CPATH}:}${dir}"
    done
    mkdir -p "${wheel_dir}"
    (cd "${work}/mmcv-${MMCV_VERSION}" &&
        NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:-}" CPATH="${CPATH:-}" \
        MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "${python}" -m pip wheel --no-build-isolation --no-deps \
            --wheel-dir "${wheel_dir}" .)
    rm -rf "${work}"
}
