"""Portable arithmetic: a run's bytes do not depend on the CPU's kernel choice, nor on the user's shell.

Each run here is the real train stage (`python -m stages.train`), in a subprocess with the environment given, so
that the pinning happens where it must: before torch loads. The tiny run's committed bytes come from the machine
that made the project's committed results; under qemu (make test-slow) another CPU maker's cpuid gives them too.
"""

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TINY_PARAMS, committed, default_params, merge

from thesislab import arithmetic

# A shell that would choose other kernels everywhere: ATen's without FMA, oneDNN's SSE4.1, MKL's AVX2 branch.
HOSTILE = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "AVX2",
           "MKL_ENABLE_INSTRUCTIONS": "AVX2", "CUBLAS_WORKSPACE_CONFIG": ":16:8"}


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in (*arithmetic.PORTABLE, *arithmetic.CLEARED,
                                                               *arithmetic.CUDA, *arithmetic.NUMPY,
                                                               *arithmetic.NUMPY_CLEARED)}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def train_stage(data, folder, env, cmd_prefix=(), timeout=600, **params):
    """The train stage of static-0 on the tiny data, in `folder` (its own params.yaml); returns the finished
    process, and the model file's md5 when it succeeded."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    raw = default_params()
    (folder / "params.yaml").write_text(yaml.safe_dump(merge(raw, merge(TINY_PARAMS, params)), sort_keys=False))
    (folder / "weights").mkdir(exist_ok=True)
    cmd = [*cmd_prefix, sys.executable, "-m", "stages.train", "--schedule", "static", "--seed", "0",
           "--root", str(data / "raw"), "--pathlist", str(data / "pathlist"), "--stats", str(data / "stats.json"),
           "--cache", "cache", "--model", "model.pt", "--weights", "weights", "--checkpoints", "work",
           "--out", "run", "--live", "live"]
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
    model = folder / "model.pt"
    md5 = hashlib.md5(model.read_bytes()).hexdigest() if done.returncode == 0 and model.exists() else None
    return done, md5


def computation(folder):
    return json.loads((Path(folder) / "run" / "metrics.json").read_text())["computation"]


def test_the_shell_cannot_change_a_portable_runs_bytes(tiny_data, tmp_path):
    """With portable arithmetic the user's kernel settings are overridden before torch loads (pinned any later,
    ATen's `default` kernels would be in effect, and the bytes would differ); with engine.portable: false the
    same settings are in effect, and change the bytes: the pinning is what makes the two runs agree."""
    cpu = {"device": "cpu"}  # the CPU's kernels, also where a GPU is
    plain, a = train_stage(tiny_data, tmp_path / "plain", clean_env(), engine=cpu)
    hostile, b = train_stage(tiny_data, tmp_path / "hostile", clean_env(**HOSTILE), engine=cpu)
    native, c = train_stage(tiny_data, tmp_path / "native", clean_env(**HOSTILE), engine={**cpu, "portable": False})
    assert plain.returncode == hostile.returncode == native.returncode == 0, plain.stderr + hostile.stderr
    assert a == b
    assert c != a
    assert computation(tmp_path / "plain") == computation(tmp_path / "hostile")
    assert computation(tmp_path / "plain")["cpu_kernels"] == "portable (AVX2, MKL compatible)"
    assert "DEFAULT" in computation(tmp_path / "native")["cpu_kernels"]  # what native arithmetic used, recorded
    assert "ATEN_CPU_CAPABILITY=default" in computation(tmp_path / "native")["cpu_kernels"]


def test_pinning_after_torch_loaded_is_refused():
    """In-process callers (tests, notebooks) that loaded torch first get an error, not silently other kernels."""
    code = ("import torch\nfrom thesislab import arithmetic\ntry:\n    arithmetic.pin(True)\n"
            "except RuntimeError as e:\n    print('refused:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("refused: torch was imported before the CPU arithmetic was pinned (ATEN_CPU_CAPABILITY")
    same = subprocess.run([sys.executable, "-c", code], env=clean_env(**arithmetic.PORTABLE, **arithmetic.CUDA, **arithmetic.NUMPY),
                          capture_output=True, text=True, check=True).stdout
    assert same == ""  # already as pinned: nothing to refuse


NUMPY_LEVELS = ("import stages\nfrom numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__\n"
                "print(' '.join(f for f in __cpu_dispatch__ if __cpu_features__[f]))\n")


@pytest.mark.skipif(not arithmetic.has_avx2_and_fma(), reason="this CPU lacks AVX2 and FMA: nothing is pinned")
def test_every_stage_pins_numpys_kernels_whatever_the_shell_says():
    """numpy's AVX-512 maths rounds otherwise than its AVX2 maths: every stage computes with x86-64-v3, the level
    the committed data was made with, even when the shell asks for another (stages/__init__.py pins it)."""
    for shell in ({}, {"NPY_DISABLE_CPU_FEATURES": "X86_V3"}, {"NPY_ENABLE_CPU_FEATURES": "X86_V3 X86_V4"}):
        out = subprocess.run([sys.executable, "-c", NUMPY_LEVELS], env=clean_env(**shell), cwd=ROOT,
                             capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.split() == ["X86_V3"], (shell, out.stdout, out.stderr[-500:])


@pytest.mark.skipif(platform.machine() != "x86_64", reason="numpy's kernels are pinned on x86-64 only")
def test_pinning_numpy_after_it_loaded_is_refused():
    code = ("import numpy\nfrom thesislab import arithmetic\ntry:\n    arithmetic.pin_numpy()\n"
            "except RuntimeError as e:\n    print('refused:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("refused: numpy was imported before its SIMD kernels were pinned")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="numpy's kernels are pinned on x86-64 only")
@pytest.mark.parametrize("shell", [{"NPY_ENABLE_CPU_FEATURES": "AVX2"}, {"NPY_ENABLE_CPU_FEATURES": ""},
                                   {"NPY_DISABLE_CPU_FEATURES": "AVX2"}])
def test_a_process_that_loaded_numpy_first_passes_the_pinned_choice_on(shell):
    """The sweep and verify load numpy before they import a stage's module for its options (stages/__init__.py
    pins there, not strictly): whatever numpy variable the shell holds, that is no error, and the processes they
    start inherit the pinned choice. (A shell with NPY_ENABLE_CPU_FEATURES ended make run in a RuntimeError.)"""
    code = ("import os, numpy\nfrom thesislab.sweep import plan\nfrom stages.train import parse_args\n"
            "print(repr(os.environ.get('NPY_ENABLE_CPU_FEATURES')), os.environ['NPY_DISABLE_CPU_FEATURES'])\n")
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(**shell), cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-1000:]
    assert out.stdout.split(" ", 1) == ["None", arithmetic.NUMPY["NPY_DISABLE_CPU_FEATURES"] + "\n"]


def test_predict_as_a_library_computes_with_portable_arithmetic():
    """Imported, not run as a command, it pins all the same; after torch was loaded with other kernels it refuses
    rather than compute with them."""
    code = "import os\nimport thesislab.predict\nprint(os.environ['ATEN_CPU_CAPABILITY'], os.environ['MKL_CBWR'])\n"
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(**HOSTILE), capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split() == ["avx2", "COMPATIBLE"], out.stderr[-1000:]
    late = subprocess.run([sys.executable, "-c", "import torch\n" + code], env=clean_env(**HOSTILE),
                          capture_output=True, text=True)
    assert late.returncode == 1 and "RuntimeError: torch was imported before the CPU arithmetic was pinned" in \
        late.stderr


def test_the_download_stage_makes_the_committed_sign_set(tmp_path):
    """The generated images of params.yaml as shipped, against the manifest dvc.lock records for them (made on
    an AVX2 machine): on an AVX-512 machine, numpy unpinned made a few images otherwise."""
    (tmp_path / "params.yaml").write_text(committed("params.yaml"))
    done = subprocess.run([sys.executable, "-m", "stages.download", "--out", "raw", "--samples", "samples.png",
                           "--sources", "sources"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    pathlist = yaml.safe_load(committed("dvc.lock"))["stages"]["pathlist"]  # reads the manifest
    recorded = next(d["md5"] for d in pathlist["deps"] if d["path"].endswith("/manifest.tsv"))
    assert hashlib.md5((tmp_path / "raw" / "manifest.tsv").read_bytes()).hexdigest() == recorded


# The tiny run's model file, made on the machine that made the committed results (AMD EPYC, AVX2, torch from
# constraints.txt, 1 thread); a machine that makes other bytes names them in the failure.
QEMU_PARAMS = {"epochs": 2, "speedsigns": {"train_per_class": 6, "test_per_class": 2}, "engine": {"device": "cpu"}}
COMMITTED_TINY_MD5 = "b3684d07fbb6b5fa4f6adbab8516b1ed"


@pytest.fixture(scope="module")
def qemu_data(tmp_path_factory):
    from thesislab import files
    from thesislab.data import layout, speedsigns
    from thesislab.data.stats import channel_stats

    d = tmp_path_factory.mktemp("qemu-data")
    speedsigns.generate(d / "raw", {"train": 6, "test": 2}, 16, seed=0, workers=1, progress=False)
    found = layout.scan(d / "raw")
    files.write_pathlists(found.classes, found.files, d / "pathlist")
    files.write_stats(d / "stats.json", channel_stats([d / "raw" / p for p, _ in found.files["train"]], 16,
                                                      workers=1, progress=False))
    return d


def test_this_machine_makes_the_committed_tiny_run(qemu_data, tmp_path):
    done, md5 = train_stage(qemu_data, tmp_path, clean_env(), **QEMU_PARAMS)
    assert done.returncode == 0, done.stderr
    assert md5 == COMMITTED_TINY_MD5, f"this machine's tiny run: {md5}"


QEMU = shutil.which("qemu-x86_64")


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-user is not installed (make test-slow installs it with apt)")
@pytest.mark.parametrize("cpu", ["Haswell-v4", "EPYC-Rome"])
def test_an_emulated_cpu_makes_the_committed_tiny_run(qemu_data, tmp_path, cpu):
    """Another CPU's cpuid (Intel's Haswell, AMD's Zen 2), emulated: the same bytes. About 100x slower."""
    done, md5 = train_stage(qemu_data, tmp_path, clean_env(), cmd_prefix=(QEMU, "-cpu", cpu), timeout=1500,
                            **QEMU_PARAMS)
    assert done.returncode == 0, done.stderr[-2000:]
    assert md5 == COMMITTED_TINY_MD5


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-user is not installed (make test-slow installs it with apt)")
def test_a_cpu_without_avx2_is_one_line(qemu_data, tmp_path):
    done, md5 = train_stage(qemu_data, tmp_path, clean_env(), cmd_prefix=(QEMU, "-cpu", "SandyBridge"),
                            timeout=1500, **QEMU_PARAMS)
    assert done.returncode == 2 and md5 is None
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: engine.portable: this CPU") and "lacks AVX2 and FMA" in last
