import pytest
import torch

from thesislab.config import Engine
from thesislab.errors import UserError
from thesislab.train import runtime


def test_auto_picks_the_best_device_there_is():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert runtime.pick_device("auto").type == expected


@pytest.mark.parametrize("kind, available", [
    ("cuda", torch.cuda.is_available()),
    ("mps", torch.backends.mps.is_available()),
])
def test_asking_for_a_missing_accelerator_is_one_clear_line(kind, available):
    if available:
        assert runtime.pick_device(kind).type == kind
    else:
        with pytest.raises(UserError, match=f"engine.device: {kind} was asked for"):
            runtime.pick_device(kind)


def test_cpu_runtime_is_fp32_channels_last_single_process():
    rt = runtime.setup(Engine(device="cpu"))
    assert (rt.device.type, rt.bf16, rt.channels_last, rt.world, rt.main) == ("cpu", False, True, 1, True)
    assert rt.check_each_step
    a, b = torch.ones(2), torch.ones(2)
    assert rt.sum_across(a, b) == (a, b) and a.tolist() == [1.0, 1.0]
    with rt.autocast():
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32
    assert runtime.describe(rt).startswith("cpu (")
