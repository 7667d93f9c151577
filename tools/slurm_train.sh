#!/usr/bin/env bash
# Train under Slurm with srun, one task per GPU, on one or more nodes:
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG GPUS [tools/train.py arguments]
# GPUS is the total over all nodes; GPUS_PER_NODE (default 8) and
# CPUS_PER_TASK (default 5) size each node, SRUN_ARGS adds srun options, and
# PORT (default 29500) is the rendezvous port on the first node.
# PYTHON selects the interpreter (default: python).
set -euo pipefail

if [[ $# -lt 4 ]]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG GPUS [tools/train.py arguments]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
GPUS=$4
shift 4

GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
PYTHON=${PYTHON:-python}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

# MMEngine's slurm launcher reads the rank from SLURM_PROCID, the local rank
# from SLURM_LOCALID and the first node from SLURM_NODELIST, and takes the
# rendezvous port from MASTER_PORT.
export MASTER_PORT=${PORT:-29500}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# shellcheck disable=SC2086  # SRUN_ARGS holds several options
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" --launcher slurm "$@"
