#!/usr/bin/env bash
# A short GPU benchmark (a few minutes): the reference model's training and decoding speed in bf16, one real
# Multi30k epoch, and a one-process torchrun run. Usage: bash scripts/gpu_bench.sh MULTI30K_DIR [OUT_DIR]
set -uo pipefail
data=${1:?usage: gpu_bench.sh MULTI30K_DIR [OUT_DIR]}
out=${2:-gpu_bench_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
run() { echo "+ $*" >&2; "$@"; }
nvidia-smi -L
$py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
sets=(--set "data.train=$data/train" --set "data.valid=$data/val" --set "data.test=$data/test_2016_flickr")
for attention in bahdanau luong; do
  run $py -m seq2seq bench --config configs/bench_reference.yaml "${sets[@]}" --set train.device=cuda \
    --set train.precision=bf16 --set model.attention=$attention --set train.max_tokens=12000 --set decode.batch_size=1000 \
    --steps 40 --json | tee "$out/bench_$attention.json"
done
# One epoch of real training (validation on the 1,014 val sentences included), big token batches.
for attention in bahdanau luong; do
  /usr/bin/time -f "wall %e s" $py -m seq2seq train --config configs/bench_reference.yaml "${sets[@]}" --quiet \
    --set train.device=cuda --set train.precision=bf16 --set model.attention=$attention --set train.max_tokens=12000 \
    --set train.epochs=1 --set train.run_dir="$out/epoch_$attention" --set decode.batch_size=1000 2>&1 | tail -2 | tee "$out/epoch_$attention.txt"
  grep -h '"val_bleu"' "$out/epoch_$attention/metrics.jsonl" | tail -1
done
# DDP plumbing on CUDA (nccl), one process.
$py -m torch.distributed.run --standalone --nproc-per-node 1 -m seq2seq train --config configs/demo.yaml --quiet \
  --set train.epochs=1 --set train.run_dir="$out/ddp1" 2>&1 | tail -2
