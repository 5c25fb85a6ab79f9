#!/usr/bin/env bash
# Packed training on one GPU (../shared/GPU-CHECKLIST.md item 1), time-boxed (TOTAL seconds, 450 by default):
#   env        the GPU, the driver, torch
#   pack       bench.pack_throughput: the thesis's VGG16 at batch 8 per run, CIFAR-10-size images, K = 1, 2, 6, 12,
#              24, 48 runs as one computation: aggregate images/s against one run alone, memory per K, % of the floor
#   share      two separate processes of one run each on the GPU at once (what the sweep did before packs)
#   bits       a packed run's bytes on CUDA: static-0 in a pack of width 6 with two sets of mates (the same bytes?),
#              and in a pack of width 12 (does the width change them? runtime.computation records it either way)
# Run from the repository root: bash bench/gpu_pack.sh (it works in a copy of the tree). SMOKE=1 runs it tiny on the
# CPU, to check the script. Everything goes to $OUT/log.txt; $OUT/results.txt holds the figures.
set -u
if [ "${GPU_PACK_COPY:-}" != 1 ]; then
    copy=$(mktemp -d)
    tar --exclude=./.venv --exclude=./.git --exclude=./.sweep --exclude=./.gpu -cf - . | tar -xf - -C "$copy"
    cd "$copy" && GPU_PACK_COPY=1 exec bash bench/gpu_pack.sh "$@"
fi
OUT=${OUT:-/tmp/gpu-pack}
mkdir -p "$OUT"
LOG=$OUT/log.txt
RESULTS=$OUT/results.txt
: >"$LOG"
: >"$RESULTS"
export PYTHONUNBUFFERED=1
SMOKE=${SMOKE:-0}
PY=${PY:-python3}
TOTAL=${TOTAL:-450}
if [ -d .whl ] || [ -d .gpu/whl ]; then  # packages the GPU machine lacks (dvc, dvclive and theirs), carried as wheels
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl .gpu/whl/*.whl \
        >>"$LOG" 2>&1 || echo "wheels did not install" | tee -a "$LOG"
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site

step() {  # step NAME SECONDS COMMAND...: run it with a time limit, log it, note its exit code and time
    local name=$1 limit=$2
    shift 2
    local left=$((TOTAL - SECONDS))
    [ "$left" -lt 15 ] && { printf '%-20s skipped: the time is spent\n' "$name" | tee -a "$RESULTS"; return 124; }
    [ "$limit" -gt "$left" ] && limit=$left
    echo "===== $name: $* (limit ${limit}s) $(date -u +%T)" >>"$LOG"
    local t0=$SECONDS
    if [ "$(type -t "$1")" = function ]; then  # timeout runs programs: a function goes with its own bash
        timeout -k 5 "$limit" bash -c "$(declare -f "$1"); PY=$PY; OUT=$OUT; ONE=(${ONE[*]}); \"\$@\"" _ "$@" >>"$LOG" 2>&1
    else
        timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1
    fi
    local rc=$?
    printf '%-20s rc=%-4s %4ss\n' "$name" "$rc" "$((SECONDS - t0))" | tee -a "$RESULTS" >>"$LOG"
    return $rc
}

# ---- env
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
    $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', \
torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))" 2>&1
} | tee -a "$RESULTS" >>"$LOG"

# ---- pack: K runs as one computation against one run alone
if [ "$SMOKE" = 1 ]; then
    PACK=(--model vgg16 --batch-size 8 --packs 1 2 --steps 2 --repeats 1 --device cpu)
    ONE=(--model vgg16 --batch-size 8 --packs 1 --steps 2 --repeats 1 --device cpu)
else
    PACK=(--model vgg16 --batch-size 8 --packs 1 2 6 12 24 48 --steps 60 --repeats 3 --device cuda)
    ONE=(--model vgg16 --batch-size 8 --packs 1 --steps 400 --repeats 3 --device cuda)
fi
step pack 240 $PY -m bench.pack_throughput "${PACK[@]}"
grep -E "^(vgg16|K=)" "$LOG" >>"$RESULTS"

# ---- share: two processes of one run each, at once
share() { $PY -m bench.pack_throughput "${ONE[@]}" >"$OUT/share-1.txt" 2>&1 &
          $PY -m bench.pack_throughput "${ONE[@]}" >"$OUT/share-2.txt" 2>&1; wait; }
step share 90 share
grep -h "K=" "$OUT"/share-*.txt | sed 's/^/two processes, each: /' >>"$RESULTS"

# ---- bits: static-0's model bytes with other mates, and in a wider pack (generated signs, 2 epochs)
if [ "$SMOKE" = 1 ]; then DEVICE=cpu; PER=12; else DEVICE=cuda; PER=100; fi
$PY -m bench.set_params model=vgg16 batch_size=8 epochs=2 loss_stop=0 monitor=test \
    "speedsigns.train_per_class=$PER" "speedsigns.test_per_class=$((PER / 4))" "engine.device=$DEVICE" >>"$LOG" 2>&1
step data 60 bash -c "$PY -m stages.download --out data/raw/speedsigns --samples plots/samples.png \
    --sources data/sources && $PY -m stages.pathlist --root data/raw/speedsigns --out data/pathlist && \
    $PY -m stages.stats --root data/raw/speedsigns --pathlist data/pathlist --out metrics/stats.json"
cmd() {  # cmd SCHEDULE SEED TAG: dvc.yaml's train command for the run, its outputs under TAG
    echo "python -m stages.train --schedule $1 --seed $2 --root data/raw/speedsigns --pathlist data/pathlist \
--stats metrics/stats.json --cache data/cache --model models/$3/$1-$2.pt --weights data/weights \
--checkpoints checkpoints/$3/$1-$2 --out metrics/runs/$3/$1-$2 --live metrics/live-$3"
}
step bits-a 60 $PY -m stages.train --pack --width 6 "$(cmd static 0 a)" "$(cmd dynamic 0 a)"
step bits-b 60 $PY -m stages.train --pack --width 6 "$(cmd static 0 b)" "$(cmd static 1 b)" "$(cmd dynamic 2 b)"
step bits-wide 60 $PY -m stages.train --pack --width 12 "$(cmd static 0 wide)" "$(cmd dynamic 0 wide)"
step bits-alone 60 $PY -m stages.train --pack "$(cmd static 0 alone)"
for tag in a b wide alone; do
    echo "static-0 $tag: $(md5sum "models/$tag/static-0.pt" 2>/dev/null | cut -c1-32)" >>"$RESULTS"
done
echo; echo "===== results"; cat "$RESULTS"
