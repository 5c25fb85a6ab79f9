"""Packed training's throughput: K runs of one net trained as one computation, against one run alone.

    python -m bench.pack_throughput --model vgg16 --batch-size 8 --packs 1 2 6 12 24 48 --device cuda
    python -m bench.pack_throughput --model vgg16 --batch-size 8 --packs 1 2 6 --steps 8     # the CPU twin

For each K it trains K runs (seeds 0..K-1, static LR) through the pipeline's own loop (engine.train_one_epoch, the
pack's net and each run's optimizer) on synthetic uint8 images resident on the device, and prints the aggregate
images/s (K runs x batch x steps over the seconds), its ratio to K = 1, peak memory, and on CUDA the FLOP floor
(training FLOPs per image, 3x the forward pass counted from the model, over the GPU's bf16 rate). Medians of
--repeats timed epochs, after one warm-up epoch.
"""

import argparse
import statistics
import sys
import time

from thesislab import arithmetic

arithmetic.pin("--native" not in sys.argv)  # before torch loads, as the train stage does

import torch  # noqa: E402

from thesislab.config import Engine  # noqa: E402
from thesislab.train import array, models, runtime, schedules  # noqa: E402
from thesislab.train.batches import Batches, Split, epoch_seed  # noqa: E402
from thesislab.train.engine import train_one_epoch  # noqa: E402
from thesislab.train.trainer import Member  # noqa: E402

H100_BF16_FLOPS = 790e12  # measured dense bf16 matmul rate on this workplace's H100 (see BENCHMARKS.md)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vgg16")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--packs", type=int, nargs="+", default=[1, 2, 6])
    ap.add_argument("--steps", type=int, default=50, help="steps in a timed epoch")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--native", action="store_true", help="the host's fastest kernels instead of portable ones")
    return ap.parse_args()


def members(args, k, rt, images, labels):
    found = []
    for seed in range(k):
        torch.manual_seed(seed)
        net = models.build(args.model, 10, args.image_size, 0.5).to(rt.device)
        if rt.channels_last:
            net = net.to(memory_format=torch.channels_last)
        batches = Batches(Split(images, labels), args.batch_size, [0.5] * 3, [0.25] * 3, None, rt.channels_last)
        found.append(Member(f"static-{seed}", "static", seed, net, None, batches, {}, max_loss=1e9))
    return found


def pack(args, k, rt, images, labels):
    runs = members(args, k, rt, images, labels)
    net = array.Single(runs[0].model) if k == 1 else array.Stacked([m.model for m in runs], not rt.cuda)
    for slot, m in enumerate(runs):
        m.slot = slot
        m.optimizer = torch.optim.SGD(m.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4,
                                      **({"fused": True} if rt.cuda else {"foreach": True}))
        m.schedule = schedules.Static(m.optimizer)
    return net, runs


def timed_epoch(net, runs, epoch, rt) -> float:
    net.seed_dropout([epoch_seed(m.seed, epoch, "dropout") for m in runs], rt.device)
    rt.synchronize()
    start = time.perf_counter()
    train_one_epoch(net, runs, [epoch_seed(m.seed, epoch, "batches") for m in runs], len(runs), rt)
    rt.synchronize()
    return time.perf_counter() - start


def main():
    args = parse_args()
    rt = runtime.setup(Engine(device=args.device, portable="--native" not in sys.argv, bf16=True))
    n = args.steps * args.batch_size
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, args.image_size, args.image_size), dtype=torch.uint8, generator=g)
    images, labels = images.to(rt.device), torch.randint(0, 10, (n,), generator=g).to(rt.device)
    flops = 3 * models.count_flops(models.build(args.model, 10, args.image_size, 0.5), args.image_size)
    print(f"{args.model} at batch {args.batch_size} per run, {args.image_size} px, {args.steps} steps an epoch, on "
          f"{runtime.describe(rt)}; training FLOPs an image {flops / 1e9:.2f} G")
    base = None
    for k in args.packs:
        if rt.cuda:
            torch.cuda.reset_peak_memory_stats(rt.device)
        try:
            net, runs = pack(args, k, rt, images, labels)
            timed_epoch(net, runs, 0, rt)  # warm-up: kernels chosen, memory allocated
            seconds = statistics.median(timed_epoch(net, runs, e, rt) for e in range(1, args.repeats + 1))
        except torch.OutOfMemoryError:
            print(f"K={k:3d}: out of memory")
            break
        rate = k * n / seconds
        if k == 1:
            base = rate
        memory = (f"{torch.cuda.max_memory_allocated(rt.device) / 2**30:6.2f} GiB peak" if rt.cuda else
                  f"{_rss_gib():6.2f} GiB RSS")
        floor = f", {rate * flops / H100_BF16_FLOPS:6.1%} of the bf16 FLOP floor" if rt.cuda else ""
        ratio = f"{rate / base:5.2f}x one run alone" if base else ""
        print(f"K={k:3d}: {rate:10,.0f} images/s  {ratio}  {memory}{floor}", flush=True)
        del net, runs
        if rt.cuda:
            torch.cuda.empty_cache()


def _rss_gib():
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 2**20
    except (OSError, StopIteration):
        return float("nan")


if __name__ == "__main__":
    main()
