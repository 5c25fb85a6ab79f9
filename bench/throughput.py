"""Training throughput: the real loop against the model's compute-only speed, and against the FLOP floor.

    python -m bench.throughput --model signnet --batch-sizes 16 128
    python -m bench.throughput --model vgg16 --batch-sizes 8 512 --images 50000 --device cuda

For each batch size it times, in one process and interleaved:
  compute   forward + backward + SGD step on one batch already on the device (the ceiling);
  loop      train_one_epoch over uint8 images on the device (gather, augment, normalise, step);
  pil       (--pil) a DataLoader over per-image PIL transforms, as the tutorials do;
  streamed  (--streamed) train_one_epoch over the same images streamed from a memory-mapped .npy, as the
            pipeline does with data over its memory budget.
and prints images/s, the loop's share of compute-only, and on CUDA the epoch time next to the floor
(training FLOPs per image, counted from the model, over the GPU's bf16 rate).
"""

import argparse
import statistics
import sys
import time

from thesislab import arithmetic
from thesislab.config import Engine

PORTABLE = "--native" not in sys.argv
arithmetic.pin(PORTABLE)  # before torch loads, as the train stage does: the kernels timed are the runs' own

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from thesislab.train import engine, models, runtime, schedules  # noqa: E402
from thesislab.train.batches import Batches, Split  # noqa: E402

H100_BF16_FLOPS = 790e12  # measured dense bf16 matmul rate on this workplace's H100 (see BENCHMARKS.md)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="signnet", help="any name params.yaml's `model` takes")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 128])
    ap.add_argument("--images", type=int, default=4096, help="images in the synthetic epoch")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--classes", type=int, default=11)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--augment", action="store_true", help="random translation and flips in the loop")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats; medians are reported")
    ap.add_argument("--compile", default=None, help="torch.compile mode for both (default: none)")
    ap.add_argument("--pil", action="store_true", help="also time a DataLoader over per-image PIL transforms")
    ap.add_argument("--streamed", action="store_true", help="also time the loop streaming from a memory map")
    ap.add_argument("--native", action="store_true",
                    help="the host's fastest kernels (engine.portable: false) instead of the portable ones")
    return ap.parse_args()


def make_model(args, rt):
    torch.manual_seed(0)
    model = models.build(args.model, args.classes, args.image_size, 0.5).to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4,
                          **({"fused": True} if rt.cuda else {"foreach": True}))
    net = torch.compile(model, mode=args.compile) if args.compile else model
    return model, net, opt


def time_compute(net, opt, rt, batch_size, steps, args):
    """Images/s of forward+backward+step on one fixed batch: no data movement at all."""
    x = torch.randn(batch_size, 3, args.image_size, args.image_size, device=rt.device)
    if rt.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, args.classes, (batch_size,), device=rt.device)
    net.train()

    def run(n):
        for _ in range(n):
            with rt.autocast():
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run(3)
    rt.synchronize()
    start = time.perf_counter()
    run(steps)
    rt.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def time_loop(net, opt, rt, batches, seed):
    stats = engine.train_one_epoch(net, batches, opt, schedules.Static(opt), seed, rt)
    return stats["images"] / stats["seconds"]


def time_pil(net, opt, rt, batch_size, args):
    """The tutorials' input pipeline: PIL image -> ToTensor -> Normalize per image, in a DataLoader."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms

    pixels = np.random.default_rng(0).integers(0, 256, (args.images, args.image_size, args.image_size, 3), np.uint8)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.25] * 3)])

    class PilSet(torch.utils.data.Dataset):
        def __len__(self):
            return len(pixels)

        def __getitem__(self, i):
            return tf(Image.fromarray(pixels[i])), i % args.classes

    loader = torch.utils.data.DataLoader(PilSet(), batch_size=batch_size, shuffle=True, num_workers=0)
    net.train()
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        x, y = x.to(rt.device), y.to(rt.device)
        if rt.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with rt.autocast():
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += y.shape[0]
    rt.synchronize()
    return seen / (time.perf_counter() - start)


def main():
    args = parse_args()
    rt = runtime.setup(Engine(device=args.device, portable=PORTABLE))
    print(f"device: {runtime.describe(rt)}; model {args.model}; {args.images} images of {args.image_size}px")
    model, net, opt = make_model(args, rt)
    flops = 3 * models.count_flops(model, args.image_size, rt.device)  # forward + backward (2x forward)
    print(f"training cost: {flops / 1e9:.3f} GFLOP per image (3x the counted forward pass)")
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, args.image_size, args.image_size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, args.classes, (args.images,), generator=g).to(rt.device)
    split = Split(images.to(rt.device), labels)
    streamed = streamed_split(images, labels) if args.streamed else None
    augment = (2, True) if args.augment else None
    rows = []
    for bs in args.batch_sizes:
        batches = Batches(split, bs, [0.5] * 3, [0.25] * 3, augment, rt.channels_last)
        steps = max(10, len(batches))
        time_loop(net, opt, rt, batches, seed=0)  # warm-up (and compilation)
        compute, loop, pil, stream = [], [], [], []
        for r in range(args.repeats):
            compute.append(time_compute(net, opt, rt, bs, steps, args))
            loop.append(time_loop(net, opt, rt, batches, seed=r + 1))
            if args.pil:
                pil.append(time_pil(net, opt, rt, bs, args))
            if streamed is not None:
                from_map = Batches(streamed, bs, [0.5] * 3, [0.25] * 3, augment, rt.channels_last)
                stream.append(time_loop(net, opt, rt, from_map, seed=r + 1))
        rows.append((bs, statistics.median(compute), statistics.median(loop), statistics.median(pil) if pil else None,
                     statistics.median(stream) if stream else None))
    print_table(rows, flops, rt, args)


def streamed_split(images, labels):
    """The same images in a memory-mapped .npy, read batch by batch as the pipeline streams its cache."""
    import atexit
    import shutil
    import tempfile

    import numpy as np

    folder = tempfile.mkdtemp(prefix="throughput-")
    atexit.register(shutil.rmtree, folder, True)
    path = f"{folder}/images.npy"
    np.save(path, images.numpy())
    return Split(np.load(path, mmap_mode="r"), labels, np.arange(len(labels)))


def print_table(rows, flops, rt, args):
    head = f"{'batch':>6} {'compute img/s':>14} {'loop img/s':>11} {'loop/compute':>13}"
    head += f" {'pil img/s':>10} {'pil/compute':>12}" if args.pil else ""
    head += f" {'streamed img/s':>15} {'streamed/compute':>17}" if args.streamed else ""
    head += f" {'epoch s (50k)':>14} {'floor s':>8} {'x floor':>8}" if rt.cuda else ""
    print(head)
    for bs, compute, loop, pil, stream in rows:
        line = f"{bs:>6} {compute:>14,.0f} {loop:>11,.0f} {loop / compute:>12.0%}"
        if args.pil:
            line += f" {pil:>10,.0f} {pil / compute:>11.0%}"
        if args.streamed:
            line += f" {stream:>15,.0f} {stream / compute:>16.0%}"
        if rt.cuda:
            epoch_s, floor_s = 50_000 / loop, 50_000 * flops / H100_BF16_FLOPS
            line += f" {epoch_s:>14.3f} {floor_s:>8.3f} {epoch_s / floor_s:>7.1f}x"
        print(line)


if __name__ == "__main__":
    main()
