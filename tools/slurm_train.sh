#!/usr/bin/env bash
# bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# GPUS (default 8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS as in mmdet.
#
# Preemption and time limits: SIGNAL (default TERM@120) is passed to srun as
# --signal, so Slurm sends SIGTERM to every task 120 s before the time limit
# (or before a preemption kill, with the cluster's GraceTime). mmswift's
# PreemptionHook (in every config through configs/_base_/robust_training.py)
# then finishes the iteration, writes a complete checkpoint and every task
# exits 3; this script exits 3 too. Requeue and continue exactly with
# --resume, e.g. in an sbatch script:
#   bash tools/slurm_train.sh PART swift-l1 CONFIG WORK_DIR --resume
#   [ $? -eq 3 ] && scontrol requeue "$SLURM_JOB_ID"
# (--resume on an empty work dir simply starts from scratch). Any other
# non-zero status is a failure, not a preemption.
set -x
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SIGNAL=${SIGNAL:-TERM@120}
SRUN_ARGS=${SRUN_ARGS:-""}
PY_ARGS=${@:5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHONPATH="$ROOT:$PYTHONPATH" \
srun -p ${PARTITION} \
    --job-name=${JOB_NAME} \
    --gres=gpu:${GPUS_PER_NODE} \
    --ntasks=${GPUS} \
    --ntasks-per-node=${GPUS_PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    --signal=${SIGNAL} \
    ${SRUN_ARGS} \
    python -u "$ROOT/tools/train.py" ${CONFIG} --work-dir=${WORK_DIR} --launcher="slurm" ${PY_ARGS}
