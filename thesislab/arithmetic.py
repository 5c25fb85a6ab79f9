"""Portable arithmetic: the same params give the same bits on every x86-64 CPU with AVX2 and FMA.

PyTorch's CPU build picks its kernels by the CPU it finds, and each choice rounds differently: ATen's vectorised
kernels (default / avx2 / avx512), oneDNN's convolutions (up to AVX-512 and AMX) and MKL's GEMM and vector maths
(a code branch per CPU generation, and another on AMD). Three settings pin one choice everywhere; a fourth pins
numpy's own kernels, for every stage (pin_numpy). Each library
reads its setting once, the first time it is used, so they must be in the environment before torch is imported:
a process that computes a run calls pin() first (the train stage, predict, the tests' conftest), and a process
it starts inherits them (torchrun's children). setup() checks, once torch is loaded, that they took effect.

Not free everywhere: MKL's compatible branch is plain SSE2 for large float32 GEMMs (BENCHMARKS.md measures it);
the convolutions and ATen's kernels keep AVX2. engine.portable: false trades the promise for the host's fastest
kernels, and records which ones (`computation`), so that a resume or a comparison never mixes the two.

This module must not import torch.
"""

import os
import platform
import sys

# engine.portable: true. `default` would not do for ATen: its kernels are built without FMA, so the value must be
# one that every CPU of the promise runs, not "the least a CPU has".
PORTABLE = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",  # not AVX2: on AMD CPUs MKL would still choose its own branch
}
# Other names for the same choices, which a user's shell may hold: cleared for portable arithmetic.
CLEARED = ("DNNL_MAX_CPU_ISA", "ONEDNN_CPU_ISA_HINTS", "DNNL_CPU_ISA_HINTS", "MKL_ENABLE_INSTRUCTIONS",
           "MKL_DEBUG_CPU_TYPE")
# cuBLAS's deterministic workspace (CUDA): read when its first handle is made.
CUDA = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
# numpy picks its own SIMD kernels by CPU too, and on AVX-512 some of its maths rounds otherwise than on AVX2 (found:
# the generated sign set differed in a few images, so every run after it did). Its levels above AVX2 (x86-64-v3)
# are switched off for every stage, whatever engine.portable (the data stages have no such knob). Disabling, not
# enabling x86-64-v3: a CPU without it (or an emulated one) still loads numpy, and unknown names are ignored.
# tests/test_portable.py checks that x86-64-v3 is then the only level in effect, so a numpy with new levels shows.
NUMPY = {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
NUMPY_CLEARED = ("NPY_ENABLE_CPU_FEATURES",)


def environment(portable: bool) -> dict:
    """Each variable pinned, with the value it must have (None: unset). Native arithmetic pins nothing: the
    host's own choice, and any of these variables the user set, are in effect (and recorded: kernels())."""
    if not portable:
        return {}
    return {**{name: None for name in CLEARED}, **PORTABLE, **CUDA}


def pin(portable: bool):
    """Put the kernel choice into this process's environment, before torch loads. Where torch is loaded already
    (an in-process caller such as a test), the environment must already say the same: a choice made too late
    would silently not apply, so it is refused."""
    want = environment(portable)
    if "torch" in sys.modules:
        wrong = sorted(k for k, v in want.items() if os.environ.get(k) != v)
        if wrong:
            raise RuntimeError(f"torch was imported before the CPU arithmetic was pinned ({', '.join(wrong)} not "
                               f"as engine.portable: {str(portable).lower()} needs): pin() must come first")
    else:
        for name, value in want.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    pin_numpy()


def pin_numpy(strict=True):
    """Cap numpy's SIMD kernels at x86-64-v3 before numpy loads (stages/__init__.py does, for every stage; pin()
    too). Refused where numpy is loaded already without it (it would not apply), unless not strict: a process
    that imports a stage's module for its options (the sweep, verify) computes nothing with numpy, and only
    passes the pinned environment on to the processes it starts (each of which pins again anyway)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return
    if "numpy" in sys.modules and strict and not numpy_pinned():
        raise RuntimeError("numpy was imported before its SIMD kernels were pinned (NPY_DISABLE_CPU_FEATURES): "
                           "pin_numpy() must come first")
    os.environ.update(NUMPY)
    for name in NUMPY_CLEARED:
        os.environ.pop(name, None)


def numpy_pinned() -> bool:
    """Whether this process's environment holds numpy's pinned kernel choice (and no other)."""
    return all(os.environ.get(k) == v for k, v in NUMPY.items()) and not any(k in os.environ for k in NUMPY_CLEARED)


def has_avx2_and_fma() -> bool:
    """From the kernel's CPU flags (no numpy, no torch); under qemu-user these are the host's."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return "avx2" in flags and "fma" in flags
    except OSError:
        pass
    return False


def check(portable: bool):
    """Once torch is loaded: the pinned kernels are the ones in effect, or one line says why they cannot be."""
    import torch

    from thesislab.errors import UserError

    if not portable:
        return
    # Before the first op: ATen takes ATEN_CPU_CAPABILITY=avx2 at its word, and a CPU without AVX2 then dies of an
    # illegal instruction.
    if not torch.cpu._is_avx2_supported():
        raise UserError(f"engine.portable: this CPU ({cpu_name()}) lacks AVX2 and FMA, which portable arithmetic "
                        "computes with; set engine.portable: false to train with its own kernels (its numbers will "
                        "not match runs made on other machines, and its runs are kept apart from theirs)")
    in_effect = torch.backends.cpu.get_cpu_capability()
    if in_effect != "AVX2":
        raise RuntimeError(f"ATen computes with {in_effect} kernels, not AVX2: the arithmetic was pinned after torch "
                           "first used them")


def kernels(portable: bool) -> str:
    """What a run's CPU arithmetic depends on, for its record and its digest: one value on every machine when
    portable; the host's own kernel level and CPU maker otherwise (another host computes another way)."""
    if portable:
        return "portable (AVX2, MKL compatible)"
    import torch

    chosen = [f"{k}={os.environ[k]}" for k in (*PORTABLE, *CLEARED) if k in os.environ]
    return f"native ({'; '.join([torch.backends.cpu.get_cpu_capability(), cpu_vendor(), *chosen])})"


def cpu_vendor() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown"


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
