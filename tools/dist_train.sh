#!/usr/bin/env bash
# bash tools/dist_train.sh CONFIG GPUS [train.py args...]
# torchrun on one node (NNODES/NODE_RANK/MASTER_ADDR/PORT for several).
# On a CPU-only machine the processes use gloo.
# On SIGTERM torchrun forwards the signal to the workers, which finish the
# iteration, write a checkpoint and exit 3 (PreemptionHook); torchrun then
# reports them as failed (its own status is not 3), so a requeue script looks for the
# "preempted:" line in the log (tools/slurm_train.sh passes 3 through).
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHONPATH="$ROOT:$PYTHONPATH" \
${PYTHON:-python} -m torch.distributed.run \
    --nnodes=$NNODES --node_rank=$NODE_RANK --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS --master_port=$PORT \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
