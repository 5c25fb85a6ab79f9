"""The sweep's small decisions, without running one: which GPUs a local run gets, what a silent squeue means."""

import subprocess

from thesislab.sweep import engines
from thesislab.sweep.__main__ import visible_gpus
from thesislab.sweep.worker import describe_exit


def test_local_runs_get_the_gpus_this_process_was_given(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus(2) == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus(2) == ["2", "3"]  # not physical 0 and 1, someone else's
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-4f1c, MIG-77aa")
    assert visible_gpus(2) == ["MIG-4f1c", "MIG-77aa"]


def test_a_squeue_that_does_not_answer_is_not_an_empty_queue(monkeypatch):
    """Were it read as empty, every running task would be declared lost and submitted a second time."""
    slurm = engines.Slurm.__new__(engines.Slurm)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "timed out"))
    assert slurm._in_queue("12") is None
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "0 RUNNING\n3 PENDING\n",
                                                                                         ""))
    assert slurm._in_queue("12") == {0: "RUNNING", 3: "PENDING"}
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    assert slurm._in_queue("12") == {}


def test_how_a_run_ended_in_words():
    assert describe_exit(0) == "exit 0" and describe_exit(1) == "exit 1"
    assert describe_exit(137) == "killed by SIGKILL" and describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(engines.LOST).startswith("lost")


def test_gres_gpus_are_read_from_sinfo():
    assert engines._gres_gpus("gpu:8") == 8 and engines._gres_gpus("gpu:a100:4(S:0-1)") == 4
    assert engines._gres_gpus("(null)") == 0 and engines._gres_gpus("gpu:2,gpu:v100:2") == 4
