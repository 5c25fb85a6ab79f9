"""Where training runs: the device, chosen once, and the process group when started under torchrun."""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from thesislab import arithmetic
from thesislab.errors import UserError
from thesislab.parallel import die_with_parent


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    bf16: bool  # autocast matmuls and convolutions to bf16 (CUDA only)
    channels_last: bool
    rank: int = 0
    world: int = 1

    @property
    def main(self):
        return self.rank == 0

    @property
    def check_each_step(self):
        """Whether reading the loss every step is free (CPU) and safe (one process)."""
        return self.device.type == "cpu" and self.world == 1

    @property
    def cuda(self):
        return self.device.type == "cuda"

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def sum_across(self, *tensors):
        """Sum each tensor over all processes (in place); a no-op in a single process."""
        if self.world > 1:
            for t in tensors:
                dist.all_reduce(t)
        return tensors

    def alone(self) -> "Runtime":
        """The same device and settings for work this process does by itself (no collectives)."""
        return Runtime(self.device, self.bf16, self.channels_last)

    def synchronize(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)


def pick_device(preference) -> torch.device:
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if preference == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if preference == "cuda" and not cuda:
        raise UserError("engine.device: cuda was asked for, but this torch sees no CUDA GPU (use auto or cpu)")
    if preference == "mps" and not mps:
        raise UserError("engine.device: mps was asked for, but this machine has no Apple GPU (use auto or cpu)")
    return torch.device(preference)


# Set by the sweep (thesislab.sweep) for each run it starts: what every run of one sweep must share. A worker that
# differs (another torch, no GPU where one was asked for) refuses before reading any data, in one line.
EXPECT_TORCH, EXPECT_DEVICE = "THESISLAB_EXPECT_TORCH", "THESISLAB_EXPECT_DEVICE"


def check_expected(device):
    want_torch, want_device = os.environ.get(EXPECT_TORCH), os.environ.get(EXPECT_DEVICE)
    if want_torch or want_device:  # started by a sweep's worker: end with it
        die_with_parent()
    if want_torch and want_torch != torch.__version__:
        raise UserError(f"this worker has torch {torch.__version__}, the sweep's runs use {want_torch}: its results "
                        "could not be compared with theirs; install the same version (constraints.txt)")
    if want_device and want_device != device.type:
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        raise UserError(f"this worker would train on {device.type}, the sweep's runs train on {want_device} "
                        f"(CUDA_VISIBLE_DEVICES={gpus}); refused before training")


def setup(engine) -> Runtime:
    """Choose the device and, under torchrun (WORLD_SIZE > 1), join the process group."""
    arithmetic.pin(engine.portable)  # torch is loaded here: this only checks that the caller pinned it first
    arithmetic.check(engine.portable)
    device = pick_device(engine.device)
    check_expected(device)
    # A fixed thread count, not "every core": CPU reductions split by thread round differently, so the same params
    # give the same numbers on a laptop, a 32-core node and each of a sweep's runs.
    torch.set_num_threads(engine.threads)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        _cuda_settings(engine.portable)
    on_cuda = device.type == "cuda"
    # channels_last: tensor cores on CUDA want it, and oneDNN's CPU convolutions run about twice as fast.
    return Runtime(device=device, bf16=on_cuda and engine.bf16, channels_last=device.type in ("cuda", "cpu"),
                   rank=rank, world=world)


def _cuda_settings(portable):
    """TF32 for any float32 matmul left outside autocast (deterministic, only less precise). Portable: the same
    bytes run to run on one GPU model: deterministic algorithms where PyTorch has them (an op that has none warns
    once, naming itself), and no cuDNN autotuning, which picks kernels by timing them. Else cuDNN picks the
    fastest kernels for the fixed shapes."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = not portable
    torch.backends.cudnn.deterministic = portable
    torch.use_deterministic_algorithms(portable, warn_only=True)


def teardown(rt: Runtime):
    if rt.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def computation(rt: Runtime, engine, pack=1) -> dict:
    """How the arithmetic is done, as resolved on this machine: what a resumed run must share with the run
    that saved the checkpoint. `device: auto` and `device: cpu` are the same computation on a CPU-only
    machine; bf16 is only in effect on CUDA. pack: the width of the pack the run trains in; on the CPU a packed
    run computes exactly as alone, on CUDA its kernels depend on the width (recorded, so never mixed)."""
    # torch's version (other kernels) and the CPU thread count (reductions split another way) change rounding too;
    # engine.threads fixes the count, which is what a sweep's workers all set. The CPU kernels count on CUDA too:
    # the initial weights are drawn on the CPU.
    threads = engine.threads if rt.device.type == "cpu" else None
    record = {"device": rt.device.type, "bf16": rt.bf16, "channels_last": rt.channels_last, "compile": engine.compile,
              "processes": rt.world, "eval_batch_size": engine.eval_batch_size, "torch": torch.__version__,
              "threads": threads, "portable": engine.portable, "cpu_kernels": arithmetic.kernels(engine.portable)}
    if rt.device.type != "cpu" and pack > 1:
        record["pack"] = pack
    return record


def describe(rt: Runtime) -> str:
    if rt.cuda:
        name = torch.cuda.get_device_name(rt.device)
        extra = ", bf16 autocast" if rt.bf16 else ""
        text = f"cuda ({name}{extra}, channels_last)"
    else:
        text = f"{rt.device.type} ({torch.get_num_threads()} threads{', channels_last' if rt.channels_last else ''})"
    return text + (f", {rt.world} processes" if rt.world > 1 else "")
