#!/usr/bin/env bash
# GPU smoke test: with the model on the GPU, every family trains, every registered sampler samples,
# the main pictures draw, inpainting, classifier guidance, eval and resume work. Run it on a CUDA
# machine whenever one is available (issue #17: the CPU-generator-vs-CUDA-model class of bug).
#
#   bash benchmarks/gpu_smoke.sh                  # --device cuda: aim < 3 minutes on one GPU
#   DEVICE=cpu bash benchmarks/gpu_smoke.sh       # the same commands on the CPU: a dry run of the script
#
# Exits non-zero at the first failing command (its log's tail is printed); prints what passed.
# Tiny sizes throughout (procedural shapes at 16 px, T = 100, tens of steps; no dataset to download):
# it checks that things run, not quality.
# OUT=folder keeps the runs and pictures (default: a temporary folder); GENLAB=... picks the command.
set -euo pipefail

DEVICE=${DEVICE:-cuda}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${GENLAB:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/genlab" ]]; then GENLAB="$ROOT/.venv/bin/genlab"; else GENLAB=genlab; fi
fi
PYTHON=${PYTHON:-$(dirname "$(command -v "$GENLAB")")/python}
[[ -x "$PYTHON" ]] || PYTHON=python
OUT=${OUT:-$(mktemp -d -t genlab-gpu-smoke-XXXX)}
export GENLAB_HOME="$OUT/home"      # the smoke run's own feature classifiers and caches
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT/logs"

if [[ "$DEVICE" == cuda* ]] && ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA GPU visible; run DEVICE=cpu bash benchmarks/gpu_smoke.sh for a dry run" >&2
  exit 2
fi

PASSED=()
START=$SECONDS
run() {  # run NAME COMMAND...: log to $OUT/logs/NAME.log; stop at the first failure
  local name=$1; shift
  local t=$SECONDS
  if "$@" >"$OUT/logs/$name.log" 2>&1; then
    PASSED+=("$name")
    printf 'ok   %-28s %4ds\n' "$name" $((SECONDS - t))
  else
    printf 'FAIL %-28s (exit %d): %s\n' "$name" $? "$*" >&2
    tail -n 25 "$OUT/logs/$name.log" >&2
    echo "passed before the failure (${#PASSED[@]}): ${PASSED[*]:-none}" >&2
    exit 1
  fi
}

D=(--device "$DEVICE")
SHAPES=(--dataset shapes --image-size 16 --subset 512)
SMALL=(--batch-size 32 --max-steps 30 --no-progress)
GRID=(--num-samples 16)  # the end-of-run sample grid, on the device
UNET=(--base-width 16 --channel-mult 1,2 --num-res-blocks 1 --attn-resolutions 8 --timesteps 100)
DIFF="$OUT/diffusion"
echo "genlab GPU smoke test on $DEVICE into $OUT"

# training: diffusion (ends with a sample grid on the device), then resumed; the other families cheaply
run train-diffusion "$GENLAB" train diffusion "${SHAPES[@]}" "${UNET[@]}" --conditional "${SMALL[@]}" "${GRID[@]}" "${D[@]}" \
  --out "$DIFF"
run resume-diffusion "$GENLAB" train diffusion --out "$DIFF" --resume --max-steps 45 --no-progress "${D[@]}"
run train-classifier "$GENLAB" train classifier "${SHAPES[@]}" --width 8 --epochs 1 --batch-size 64 --no-progress \
  "${D[@]}" --out "$GENLAB_HOME/classifiers/shapes-3x16"
run train-noisy-classifier "$GENLAB" train noisy-classifier "${SHAPES[@]}" --timesteps 100 --epochs 1 --batch-size 64 \
  --max-steps 20 --no-progress "${D[@]}" --out "$OUT/noisy"
run train-vae "$GENLAB" train vae "${SHAPES[@]}" --latent-dim 8 --width 8 --iwae-k 4 "${SMALL[@]}" "${GRID[@]}" "${D[@]}" --out "$OUT/vae"
run train-hvae "$GENLAB" train hvae "${SHAPES[@]}" --width 8 --iwae-k 4 "${SMALL[@]}" "${GRID[@]}" "${D[@]}" --out "$OUT/hvae"
run train-ae "$GENLAB" train ae "${SHAPES[@]}" --width 8 "${SMALL[@]}" "${D[@]}" --out "$OUT/ae"
run train-discrete "$GENLAB" train discrete --dataset shapes-binary --image-size 8 --channels 1 --subset 512 --dim 32 \
  --depth 1 --heads 2 --batch-size 64 --max-steps 30 --num-samples 16 --no-progress "${D[@]}" --out "$OUT/discrete"
run train-toy-diffusion "$GENLAB" train toy-diffusion --hidden 32 --depth 1 --max-steps 30 --no-progress "${D[@]}" \
  --out "$OUT/toy"

# every sampler in the registry (queried, not listed here), conditional with guidance
SAMPLERS=$("$PYTHON" -c "from genlab.diffusion.samplers import available; print(' '.join(available()))")
for s in $SAMPLERS; do
  steps=(--steps 10); [[ "$s" == ddpm ]] && steps=()
  run "sample-$s" "$GENLAB" sample --checkpoint "$DIFF" --sampler "$s" "${steps[@]}" --num-images 8 --class 1 \
    --guidance 2 "${D[@]}" --out "$OUT/samples-$s"
done
run sample-intermediates "$GENLAB" sample --checkpoint "$DIFF" --sampler ddim --steps 10 --num-images 4 \
  --show-intermediate --gif "${D[@]}" --out "$OUT/samples-strip"
run classifier-guidance "$GENLAB" sample --checkpoint "$DIFF" --sampler ddim --steps 10 --num-images 8 --class 2 \
  --classifier "$OUT/noisy" --classifier-scale 1 "${D[@]}" --out "$OUT/samples-clf"
run sample-discrete "$GENLAB" sample --checkpoint "$OUT/discrete" --num-images 8 "${D[@]}" --out "$OUT/samples-discrete"
run inpaint "$GENLAB" inpaint --checkpoint "$DIFF" --mask left --num-images 2 --samples 1 --steps 20 --resample 2 \
  "${D[@]}" --out "$OUT/inpaint"
run eval "$GENLAB" eval "$DIFF" --n 64 --sampler ddim --steps 10 "${D[@]}"

# pictures
V="$OUT/pictures"
run viz-class-grid "$GENLAB" visualize class-grid --checkpoint "$DIFF" --steps 10 --per-class 2 "${D[@]}" --out "$V/class_grid.png"
run viz-guidance-sweep "$GENLAB" visualize guidance-sweep --checkpoint "$DIFF" --steps 10 --scales 0,2 "${D[@]}" \
  --out "$V/guidance_sweep.png"
run viz-sampler-grid "$GENLAB" visualize sampler-grid --checkpoint "$DIFF" --num-images 4 "${D[@]}" --out "$V/sampler_grid.png"
run viz-ddim-interpolation "$GENLAB" visualize ddim-interpolation --checkpoint "$DIFF" --steps 10 --pairs 1 --frames 3 \
  "${D[@]}" --out "$V/ddim_interpolation.png"
run viz-inversion "$GENLAB" visualize inversion --checkpoint "$DIFF" --steps 10 --num-images 2 "${D[@]}" \
  --out "$V/inversion.png"
run viz-inpainting "$GENLAB" visualize inpainting --checkpoint "$DIFF" --steps 10 --num-images 2 --resample 2 "${D[@]}" \
  --out "$V/inpainting.png"
run viz-forward "$GENLAB" visualize forward "${SHAPES[@]}" --num-images 2 --out "$V/forward.png"
run viz-reconstructions "$GENLAB" visualize reconstructions --checkpoint "$OUT/vae" "${D[@]}" --out "$V/reconstructions.png"
run viz-prior-samples "$GENLAB" visualize prior-samples --checkpoint "$OUT/hvae" "${D[@]}" --out "$V/prior_samples.png"
run viz-toy-diffusion "$GENLAB" visualize toy-diffusion --checkpoint "$OUT/toy" --out "$V/toy"
run viz-discrete-reverse "$GENLAB" visualize discrete-reverse --checkpoint "$OUT/discrete" "${D[@]}" \
  --out "$V/discrete_reverse.png"

echo "all ${#PASSED[@]} passed on $DEVICE in $((SECONDS - START)) s: ${PASSED[*]}"
echo "samplers: $SAMPLERS; runs, pictures and logs in $OUT"
