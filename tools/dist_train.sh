#!/usr/bin/env bash
# Train on several GPUs of one machine with torchrun, one process per GPU:
#   tools/dist_train.sh CONFIG GPUS [tools/train.py arguments]
# Several machines: run it on each with the same MASTER_ADDR (an address of
# the first machine that the others reach), PORT and NNODES, and NODE_RANK
# 0, 1, ... NNODES-1. GPUS counts the GPUs of one machine.
# PYTHON selects the interpreter (default: python).
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 CONFIG GPUS [tools/train.py arguments]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
shift 2

NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHON=${PYTHON:-python}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$GPUS" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
