#!/usr/bin/env bash
# A short GPU benchmark (under 5 minutes of device time): the reference model's training and decoding speed in
# bf16 (Bahdanau and Luong: tokens/s, MFU, peak CUDA memory, greedy and beam-5 sentences/s), one real Multi30k
# epoch each, a 3-epoch run's validation BLEU (to compare with the CPU's after the same 3 epochs), and a
# one-process torchrun run. The "eager" baseline of the GPU issue; a captured (CUDA graphs) path would add a
# second pass of the same commands with its config key on. Usage: bash scripts/gpu_bench.sh MULTI30K_DIR [OUT_DIR]
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
# Quality after the same number of epochs as a CPU run: 3 epochs, validation BLEU per epoch.
$py -m seq2seq train --config configs/bench_reference.yaml "${sets[@]}" --quiet --set train.device=cuda \
  --set train.precision=bf16 --set train.max_tokens=12000 --set train.epochs=3 --set train.run_dir="$out/epochs3" \
  --set decode.batch_size=1000 2>&1 | tail -1
grep -h '"val_bleu"' "$out/epochs3/metrics.jsonl"
# DDP plumbing on CUDA (nccl), one process.
$py -m torch.distributed.run --standalone --nproc-per-node 1 -m seq2seq train --config configs/demo.yaml --quiet \
  --set train.epochs=1 --set train.run_dir="$out/ddp1" 2>&1 | tail -2
