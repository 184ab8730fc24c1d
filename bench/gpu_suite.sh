#!/usr/bin/env bash
# The GPU figures in one call: the device's two ceilings, DiT step time / MFU (several settings), the VAE
# at 256x256x17, and captioning throughput of a random-weight Qwen2.5-VL-7B. Everything lands in $OUT
# (suite.log, peak.json, dit.jsonl, vae.jsonl, caption.json: under the device tool's 8-file limit).
#
#   OUT=out/gpu bench/gpu_suite.sh           # on the GPU machine (its python3 holds torch + transformers)
#   OUT=/tmp/s PY=.venv/bin/python bench/gpu_suite.sh --tiny    # here on CPU: the same command lines, tiny sizes
#
# The checkout is made importable without installing it (the device has no registry and reelforge's
# optional dependencies are not needed by these benches): a folder of symlinks mapping the top-level
# folders to reelforge.* goes first on PYTHONPATH. Each bench runs under its own timeout, in priority
# order, and is skipped when less than its minimum is left of SUITE_SECONDS, so the call ends in time.
set -u
TINY=0; [ "${1:-}" = "--tiny" ] && TINY=1
OUT=${OUT:-out/gpu_suite}; mkdir -p "$OUT"
PY=${PY:-python3}
BUDGET=${SUITE_SECONDS:-450}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PKG=$(mktemp -d)/pkg; mkdir -p "$PKG/reelforge"
for f in reelforge/*.py; do ln -s "$ROOT/$f" "$PKG/reelforge/"; done
# every "reelforge.X" = "folder" mapping of pyproject.toml's package-dir
for d in $(sed -n 's/^"reelforge\.\([a-z_]*\)" = "\([a-z_]*\)"$/\2/p' pyproject.toml); do ln -s "$ROOT/$d" "$PKG/reelforge/$d"; done
export PYTHONPATH="$PKG:$ROOT/bench${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
LOG="$OUT/suite.log"
START=$(date +%s)
echo "gpu_suite $(date -u +%FT%TZ) tiny=$TINY budget=${BUDGET}s commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" | tee -a "$LOG"

# run NAME MIN_S MAX_S CMD...: under min(MAX_S, what is left) seconds, skipped when less than MIN_S is left
run() {
  local name=$1 min=$2 max=$3; shift 3
  if [ -n "${ONLY:-}" ] && ! [[ $name =~ $ONLY ]]; then return; fi   # ONLY='caption|dit-l': a rerun of some
  local left=$(( BUDGET - ($(date +%s) - START) ))
  if [ "$left" -lt "$min" ]; then echo "=== SKIP $name: ${left}s left < ${min}s" | tee -a "$LOG"; return; fi
  local t=$(( left < max ? left : max )) t0=$(date +%s)
  echo "=== $name (timeout ${t}s): $*" | tee -a "$LOG"
  timeout -k 5 "$t" "$@" 2>&1 | grep --line-buffered -v '^$' | tee -a "$LOG"
  echo "=== $name rc=${PIPESTATUS[0]} in $(( $(date +%s) - t0 ))s" | tee -a "$LOG"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv 2>&1 | tee -a "$LOG"
run env 10 30 "$PY" -P -c "import reelforge.train.dit.task, reelforge.recaption.captioner as c; print('reelforge from', c.__file__)"
if [ $TINY = 1 ]; then
  run peak 5 60 "$PY" bench/gpu_peak.py --out "$OUT/peak.json"
  DIT=(--latent 2x8x8 --channels 4 --patch 1 2 2 --text-len 8 --text-dim 32 --steps 2 --threads 1 --json "$OUT/dit.jsonl")
  run dit-nano 10 120 "$PY" bench/bench_dit.py --preset DiT-nano --batch 2 "${DIT[@]}"
  run dit-nano-math 10 120 "$PY" bench/bench_dit.py --preset DiT-nano --batch 2 --sdpa math --no-baseline "${DIT[@]}"
  run vae-tiny 10 120 sh -c "\"$PY\" bench/bench_train.py vae --preset tiny --frames 9 --size 32 --batch 1 --steps 2 --warmup 1 --threads 1 --json | tee -a \"$OUT/vae.jsonl\""
  run caption-tiny 10 120 "$PY" bench/bench_caption.py --no-ray --preset tiny --clips 4 --loop-clips 2 --batch 2,4 --json "$OUT/caption.json"
  exit 0
fi
run peak 10 60 "$PY" bench/gpu_peak.py --out "$OUT/peak.json"
PEAK=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get('bf16_matmul_tflops', 0))" "$OUT/peak.json" 2>/dev/null || echo 0)
# the bucket: 16-channel latents of 8x32x32 (a 4x8x8 VAE: 29-32 frames at 256x256), 1x2x2 patches = 2048
# tokens/sample; 256 text tokens of width 4096 (a T5/UMT5-XXL encoder)
DIT=(--latent 8x32x32 --channels 16 --patch 1 2 2 --text-len 256 --text-dim 4096 --steps 10
     --measured-peak-tflops "$PEAK" --json "$OUT/dit.jsonl")
run dit-xl-b8-eager 40 120 "$PY" bench/bench_dit.py --preset DiT-XL --batch 8 "${DIT[@]}"
run vae-S-256x17-b4 40 120 sh -c "\"$PY\" bench/bench_train.py vae --preset S --frames 17 --size 256 --batch 4 --steps 8 --warmup 2 --json | tee -a \"$OUT/vae.jsonl\""
run caption-7b 90 180 "$PY" bench/bench_caption.py --no-ray --preset 7b --clips 64 --loop-clips 4 --batch 16,32,64 --json "$OUT/caption.json"
run dit-xl-b8-compile 60 120 "$PY" bench/bench_dit.py --preset DiT-XL --batch 8 --compile --no-baseline "${DIT[@]}"
# a longer clip: 16x32x32 latents = 4096 tokens/sample, where attention is a third of the FLOPs
run dit-xl-16f-b8-compile 60 120 "$PY" bench/bench_dit.py --preset DiT-XL --batch 8 --compile --no-baseline \
    "${DIT[@]}" --latent 16x32x32
run dit-b-b16-eager 30 60 "$PY" bench/bench_dit.py --preset DiT-B --batch 16 "${DIT[@]}"
run dit-xl-b8-flash 30 60 "$PY" bench/bench_dit.py --preset DiT-XL --batch 8 --sdpa flash --no-baseline "${DIT[@]}"
# DiT-L: head width 64 (XL's is 72, which the attention kernels pad); the XL run again without caption
# dropout, whose empty-caption rows the task assembles on the CPU (a device-to-host copy every step)
run dit-l-16f-b8-compile 60 100 "$PY" bench/bench_dit.py --preset DiT-L --batch 8 --compile --no-baseline \
    "${DIT[@]}" --latent 16x32x32
run dit-xl-16f-b8-compile-nodrop 60 100 "$PY" bench/bench_dit.py --preset DiT-XL --batch 8 --compile --no-baseline \
    --caption-dropout 0 "${DIT[@]}" --latent 16x32x32
# batch 16 at 4096 tokens: does a fuller GPU (~100 GiB of activations for L) raise the rate?
run dit-l-16f-b16-compile 60 100 "$PY" bench/bench_dit.py --preset DiT-L --batch 16 --compile --no-baseline \
    "${DIT[@]}" --latent 16x32x32
echo "=== suite done in $(( $(date +%s) - START ))s" | tee -a "$LOG"
