#!/usr/bin/env bash
# One GPU session's checks, time-boxed, in order of what matters most (../shared/GPU-CHECKLIST.md items 1 and 2,
# and the cost of deterministic CUDA that engine.portable asks for):
#   env        the GPU, the driver, torch
#   unit       the unit tests with CUDA visible
#   pipeline   the stage commands on the generated signs at the thesis's size, VGG16, static and dynamic
#   determ     the same run again (portable: deterministic CUDA): the same model bytes? then portable: false
#   throughput bench.throughput for VGG16 at batch 8, 128, 512, and batch 8 under CUDA graphs
#   share      N signnet runs at once on one GPU (1, 4, 8 processes): does each slow down?
# Run from the repository root: bash bench/gpu_session.sh (it works in a copy of the tree, in a temporary folder).
# Everything goes to $OUT/log.txt; a table of every
# step's exit code and seconds is printed last. SMOKE=1 runs every step tiny, on the CPU, to check the script.
set -u
# It edits params.yaml, deletes metrics/runs/* and may make a git repository: always in a copy of the tree, never
# in the checkout it is started from.
if [ "${GPU_SESSION_COPY:-}" != 1 ]; then
    copy=$(mktemp -d)
    tar --exclude=./.venv --exclude=./.git --exclude=./.sweep -cf - . | tar -xf - -C "$copy"
    cd "$copy" && GPU_SESSION_COPY=1 exec bash bench/gpu_session.sh "$@"
fi
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
LOG=$OUT/log.txt
: >"$LOG"
export PYTHONUNBUFFERED=1
SMOKE=${SMOKE:-0}
PY=${PY:-python3}
RESULTS=$OUT/results.txt
: >"$RESULTS"

if [ -d .whl ]; then  # packages the GPU machine lacks (dvc, dvclive and theirs), carried as wheels
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        >>"$LOG" 2>&1 || echo "wheels did not install" | tee -a "$LOG"
    export PYTHONPATH=/tmp/site
fi

# DVCLive reads the git repository it runs in: a copy without one gets one, with its files committed.
git rev-parse -q --verify HEAD >/dev/null 2>&1 || { rm -rf .git; git init -q && git add -A && \
    git -c user.name=gpu -c user.email=gpu@localhost commit -qm "the copy on the GPU machine"; } >>"$LOG" 2>&1

TOTAL=${TOTAL:-540}  # seconds for the whole script: a step that would start past it is skipped, the last one cut short

step() {  # step NAME SECONDS COMMAND...: run it with a time limit, log it, note its exit code and time
    local name=$1 limit=$2
    shift 2
    local left=$((TOTAL - SECONDS))
    if [ "$left" -lt 15 ]; then
        printf '%-28s skipped: the session'"'"'s time is spent\n' "$name" | tee -a "$RESULTS" >>"$LOG"
        return 124
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "===== $name: $* (limit ${limit}s) $(date -u +%T)" >>"$LOG"
    local t0=$SECONDS
    if [ "$(type -t "$1")" = function ]; then  # timeout runs programs: a function goes with its own bash
        timeout -k 5 "$limit" bash -c "$(declare -f train "$1"); PY=$PY; n=${n:-1}; \"\$@\"" _ "$@" >>"$LOG" 2>&1
    else
        timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1
    fi
    local rc=$?
    printf '%-28s rc=%-4s %4ss\n' "$name" "$rc" "$((SECONDS - t0))" | tee -a "$RESULTS" >>"$LOG"
    return $rc
}

set_params() {  # set_params KEY=VALUE...: edit params.yaml (YAML values) in this copy of the project
    $PY -m bench.set_params "$@"
}

train() {  # train SCHEDULE SEED TAG: the train stage's command (dvc.yaml), its outputs under TAG
    $PY -m stages.train --schedule "$1" --seed "$2" --root data/raw/speedsigns --pathlist data/pathlist \
        --stats metrics/stats.json --cache data/cache --model "models/$3.pt" --weights data/weights \
        --checkpoints "checkpoints/$3" --out "metrics/runs/$3" --live "metrics/live-$3"
}

summary_of() {  # summary_of TAG: the numbers of a run's metrics.json on one line
    $PY -c "import json,sys,hashlib; m=json.load(open('metrics/runs/$1/metrics.json')); \
print('$1', {k: m.get(k) for k in ('test_acc','epochs','train_seconds','images_per_second','device','stop_reason')}, \
'md5', hashlib.md5(open('models/$1.pt','rb').read()).hexdigest())" >>"$RESULTS" 2>&1
}

# ---- env
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1
    $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', \
torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0)); from importlib.metadata import version as v; \
print('dvc', v('dvc'), 'dvclive', v('dvclive'))" 2>&1
    nproc
} | tee -a "$RESULTS" >>"$LOG"

# ---- unit: the unit tests with CUDA visible
if [ "$SMOKE" = 1 ]; then UNIT=(tests/test_log.py); else UNIT=(); fi
step unit 150 $PY -m pytest -q -p no:cacheprovider -n 8 --dist loadfile -m "not e2e and not slow and not engines" \
    --maxfail 15 "${UNIT[@]}"
grep -E "^(FAILED|ERROR)|passed|failed" "$LOG" | tail -20 >>"$RESULTS"

# ---- pipeline: the stage commands, the thesis's sign set, VGG16 (a few epochs: it must run, not converge)
if [ "$SMOKE" = 1 ]; then
    set_params speedsigns.train_per_class=20 speedsigns.test_per_class=5 model=signnet epochs=2 'seeds=[0]' \
        batch_size=8 engine.device=cpu
else
    set_params speedsigns.train_per_class=2400 speedsigns.test_per_class=600 model=vgg16 epochs=2 'seeds=[0]' \
        batch_size=8 monitor=test loss_stop=0 engine.device=cuda
fi
step download 120 $PY -m stages.download --out data/raw/speedsigns --samples plots/samples.png --sources data/sources
step pathlist 60 $PY -m stages.pathlist --root data/raw/speedsigns --out data/pathlist
step stats 60 $PY -m stages.stats --root data/raw/speedsigns --pathlist data/pathlist --out metrics/stats.json
rm -rf metrics/runs/*
step train-static-0 100 train static 0 static-0 && summary_of static-0
step train-dynamic-0 100 train dynamic 0 dynamic-0 && summary_of dynamic-0
step compare 60 $PY -m stages.compare --runs metrics/runs --out metrics/comparison.json \
    --headline metrics/headline.json --plots plots \
    --curves plots/curves

# ---- determ: portable (deterministic CUDA) twice: the same bytes? then native (portable: false): how much faster?
step determ-again 100 train static 0 static-0-again && summary_of static-0-again
set_params engine.portable=false
step determ-native 100 train static 0 static-0-native && summary_of static-0-native
set_params engine.portable=true

# ---- throughput against the FLOP floor
if [ "$SMOKE" = 1 ]; then
    TP=(--model signnet --batch-sizes 8 --images 256 --device cpu --repeats 1)
    TG=(--model signnet --batch-sizes 8 --images 256 --device cpu --repeats 1)
else
    TP=(--model vgg16 --batch-sizes 8 128 512 --images 20000 --device cuda --repeats 2)
    TG=(--model vgg16 --batch-sizes 8 --images 20000 --device cuda --repeats 2 --compile reduce-overhead)
fi
step throughput 110 $PY -m bench.throughput "${TP[@]}"
step throughput-graphs 100 $PY -m bench.throughput "${TG[@]}"
sed -n '/===== throughput/,$p' "$LOG" | grep -E "^ *(batch|[0-9]+ )|floor|img/s|images/s" | head -30 >>"$RESULTS"

# ---- share: several signnet runs at once on one GPU (default params, 2 epochs each)
set_params speedsigns.train_per_class=400 speedsigns.test_per_class=100 model=signnet epochs=2 batch_size=32 \
    monitor=val loss_stop=0
[ "$SMOKE" = 1 ] && set_params speedsigns.train_per_class=20 speedsigns.test_per_class=5 epochs=1
step share-data 60 bash -c "$PY -m stages.download --out data/raw/speedsigns --samples plots/samples.png \
    --sources data/sources && $PY -m stages.pathlist --root data/raw/speedsigns --out data/pathlist && \
    $PY -m stages.stats --root data/raw/speedsigns --pathlist data/pathlist --out metrics/stats.json"
share() { for i in $(seq 1 "$n"); do train static "$i" "share$n-$i" & done; wait; }
for n in 1 4 8; do
    step "share-$n-at-once" 90 share
    for i in $(seq 1 "$n"); do
        $PY -c "import json; m=json.load(open('metrics/runs/share$n-$i/metrics.json')); \
print('share$n-$i', m['train_seconds'], m['images_per_second'])" >>"$RESULTS" 2>&1
    done
done

tar czf "$OUT/outputs.tgz" params.yaml metrics plots 2>>"$LOG"
echo; echo "===== results"; cat "$RESULTS"
