#!/usr/bin/env bash
# The thesis's CIFAR-10 experiment on a GPU (../shared/GPU-CHECKLIST.md item 3, and item 4's two runs sharing one
# GPU), over several calls of the GPU machine: the four archives of ../shared/data do not fit one call, so each
# call carries some of them (and the wheels of packages the machine lacks) in the ignored folder .gpu/:
#   .gpu/whl/*.whl            installed once into /tmp/site (dvc, dvclive and theirs)
#   .gpu/cifar10-*.tar.gz     extracted into $DATA (outside the tree: the machine replaces the tree each call)
# Once all 60,000 images are there, it runs the stage commands (dvc.yaml's `cmd` lines) in a copy of the tree on
# `dataset: folder`, with the thesis's settings (VGG16, batch 8, lr 0.01, dropout 0.5, monitor test) and
# static-0 and dynamic-0 training at once on the GPU, cut at EPOCHS epochs or when the call's time is spent
# (TOTAL seconds: per-epoch figures are written as each epoch ends, so a cut run still reports what it did).
# PACK=1 trains the thesis's grid instead (static and dynamic, seeds 0, 1, 2) as one pack (python -m stages.train
# --pack), the per-epoch figures of each run read from its working folder when the call's time cuts it short.
# Run from the repository root: bash bench/gpu_cifar.sh (a check on the CPU: a small cifar10/ folder in $DATA,
# NEED_TRAIN/NEED_TEST its image counts, EXTRA="engine.device=cpu model=signnet" COMPILE=false). Results: $OUT/log.txt, $OUT/results.txt, $OUT/runs.tgz.
set -u
OUT=${OUT:-/tmp/gpu-cifar}
mkdir -p "$OUT"
LOG=$OUT/log.txt
RESULTS=$OUT/results.txt
PY=${PY:-python3}
TOTAL=${TOTAL:-450}
EPOCHS=${EPOCHS:-12}
COMPILE=${COMPILE:-reduce-overhead}
export PYTHONUNBUFFERED=1
say() { echo "$*" | tee -a "$RESULTS"; }

if [ -d .gpu/whl ] && [ ! -e /tmp/site/.installed ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl \
        >>"$LOG" 2>&1 && touch /tmp/site/.installed || say "wheels did not install"
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site

DATA=${DATA:-/tmp/gpu-cifar-data}
mkdir -p "$DATA"
for archive in .gpu/cifar10-*.tar.gz; do
    [ -e "$archive" ] || continue
    tar -xzf "$archive" -C "$DATA" --no-same-owner --no-same-permissions && rm -f "$archive"
    say "extracted $archive"
done
train_images=$(find "$DATA/cifar10"/train -name '*.png' 2>/dev/null | wc -l)
test_images=$(find "$DATA/cifar10"/test -name '*.png' 2>/dev/null | wc -l)
say "CIFAR-10 here: $train_images train, $test_images test images"
[ "$train_images" = "${NEED_TRAIN:-50000}" ] && [ "$test_images" = "${NEED_TEST:-10000}" ] || exit 0

# The experiment, in a copy of the tree (it edits params.yaml; DVCLive wants a git repository).
here=$(pwd)
copy=$(mktemp -d)
tar --exclude=./.venv --exclude=./.git --exclude=./.gpu --exclude=./.sweep -cf - . | tar -xf - -C "$copy"
mkdir -p "$copy/data/sources"
mv "$DATA/cifar10" "$copy/data/sources/cifar10"
rm -rf "$copy"/metrics/runs/* "$copy"/metrics/comparison.json "$copy"/metrics/headline.json  # the tree's committed runs: never reported as these
cd "$copy" || exit 1
{ git init -q && git add -A && git -c user.name=gpu -c user.email=gpu@localhost commit -qm copy; } >>"$LOG" 2>&1

set_params() {  # set_params KEY=VALUE...: YAML values into params.yaml
    $PY -m bench.set_params "$@"
}
[ "${PACK:-0}" = 1 ] && COMPILE=false  # a pack's net is not compiled (array.why_alone)
set_params dataset=folder source=data/sources/cifar10 model=vgg16 batch_size=8 lr=0.01 dropout=0.5 monitor=test \
    "epochs=$EPOCHS" 'seeds=[0]' augment=false engine.device=cuda "engine.compile=$COMPILE" checkpoint_every=0 ${EXTRA:-}
cat params.yaml >>"$LOG"

timed() {  # timed NAME COMMAND...: run, log, note exit code and seconds
    local name=$1 t0=$SECONDS
    shift
    echo "===== $name: $* $(date -u +%T)" >>"$LOG"
    "$@" >>"$LOG" 2>&1
    local rc=$?
    say "$(printf '%-16s rc=%-4s %4ss' "$name" "$rc" "$((SECONDS - t0))")"
    return $rc
}
timed download $PY -m stages.download --out data/raw/folder --samples plots/samples.png --sources data/sources &&
timed pathlist $PY -m stages.pathlist --root data/raw/folder --out data/pathlist &&
timed stats $PY -m stages.stats --root data/raw/folder --pathlist data/pathlist --out metrics/stats.json || exit 1

train() {  # train SCHEDULE: dvc.yaml's train command for SCHEDULE-0
    $PY -m stages.train --schedule "$1" --seed 0 --root data/raw/folder --pathlist data/pathlist \
        --stats metrics/stats.json --cache data/cache --model "models/$1-0.pt" --weights data/weights \
        --checkpoints "checkpoints/$1-0" --out "metrics/runs/$1-0" --live "metrics/live-$1-0"
}
left=$((TOTAL - SECONDS - 25))
if [ "${PACK:-0}" = 1 ]; then  # the thesis's grid (static, dynamic x seeds 0, 1, 2) as one computation
    pack_cmd() {  # dvc.yaml's train command for $1-$2
        echo "python -m stages.train --schedule $1 --seed $2 --root data/raw/folder --pathlist data/pathlist \
--stats metrics/stats.json --cache data/cache --model models/$1-$2.pt --weights data/weights \
--checkpoints checkpoints/$1-$2 --out metrics/runs/$1-$2 --live metrics/live"
    }
    RUNS=(static-0 dynamic-0 static-1 dynamic-1 static-2 dynamic-2)
    cmds=()
    for run in "${RUNS[@]}"; do cmds+=("$(pack_cmd "${run%-*}" "${run#*-}")"); done
    say "training ${RUNS[*]} as one pack, at most $EPOCHS epochs or ${left}s"
    t0=$SECONDS
    timeout -k 5 "$left" $PY -m stages.train --pack "${cmds[@]}" >>"$OUT/pack.txt" 2>&1
    say "pack rc=$? $((SECONDS - t0))s"
else
    RUNS=(static-0 dynamic-0)
    say "training static-0 and dynamic-0 at once, at most $EPOCHS epochs or ${left}s"
    t0=$SECONDS
    (timeout -k 5 "$left" bash -c "$(declare -f train); PY=$PY; train static" >>"$OUT/static.txt" 2>&1; \
        echo "static rc=$? $((SECONDS - t0))s" >>"$RESULTS") &
    (timeout -k 5 "$left" bash -c "$(declare -f train); PY=$PY; train dynamic" >>"$OUT/dynamic.txt" 2>&1; \
        echo "dynamic rc=$? $((SECONDS - t0))s" >>"$RESULTS") &
    wait
fi
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv >>"$RESULTS" 2>&1
for run in "${RUNS[@]}"; do
    # Per epoch: the finished run's folder, else its working folder (cut short), else its own live view.
    for folder in "metrics/runs/$run" "checkpoints/$run/live" "metrics/live-$run"; do
        [ -d "$folder/plots/metrics" ] || continue
        say "== $run per epoch ($folder)"
        paste "$folder"/plots/metrics/{train_loss,train_acc,test_acc,lr,seconds}.tsv 2>/dev/null | tee -a "$RESULTS"
        break
    done
    [ -f "metrics/runs/$run/metrics.json" ] && cat "metrics/runs/$run/metrics.json" >>"$RESULTS"
done
tar czf "$OUT/runs.tgz" params.yaml metrics 2>>"$LOG"
cd "$here" && rm -rf "$copy"
