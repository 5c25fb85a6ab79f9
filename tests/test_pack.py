"""Packed training (thesislab.train.array, trainer.Pack): runs of one configuration trained as one computation,
each exactly as alone. The oracle is each run trained alone: on the CPU with portable arithmetic a packed run's
model file and per-epoch log are the same bytes, whatever its mates (their number, schedules, stops, data)."""

import json

import pytest
import torch
from conftest import tiny_config
from test_training import interrupt_after, run_paths

from thesislab import files
from thesislab.errors import UserError
from thesislab.train import array, assemble, engine, models
from thesislab.train.run import train_pack

GRID = [(s, seed) for seed in (0, 1, 2) for s in ("static", "dynamic")]
CUTS = {"dynamic": {"window": 2, "slope": 50.0}}  # the dynamic rule cuts the LR after epoch 2: epoch 3 trains lower


def train(tiny_data, out, runs, **over):
    """Train `runs` [(schedule, seed)] as one pack into `out`; returns {name: (model bytes, log rows)}."""
    cfg = tiny_config(**over)
    train_pack(cfg, [(s, seed, run_paths(tiny_data, out, s, seed)) for s, seed in runs], progress=False)
    return {files.run_name(s, seed): result(tiny_data, out, s, seed) for s, seed in runs}


def result(tiny_data, out, schedule, seed):
    paths = run_paths(tiny_data, out, schedule, seed)
    rows = [{k: v for k, v in r.items() if k not in files.TIMING_KEYS} for r in files.read_epochs(paths.run)]
    summary = json.loads((paths.run / files.METRICS).read_text())
    return paths.model.read_bytes(), rows, {k: v for k, v in summary.items() if k not in files.TIMING_KEYS}


def alone(tiny_data, tmp_path, runs, **over):
    found = {}
    for s, seed in runs:
        found.update(train(tiny_data, tmp_path / f"alone-{s}-{seed}", [(s, seed)], **over))
    return found


def test_a_run_packed_with_any_mates_is_the_run_alone(tiny_data, tmp_path):
    """static-0 alone, packed with dynamic-0, and packed with the five other runs of a 3-seed grid: the same model
    bytes, per-epoch log and summary; and every run of the grid packed equals it alone (dynamic ones cut their LR at
    epoch 3, static ones never)."""
    solo = alone(tiny_data, tmp_path, GRID, **CUTS)
    pair = train(tiny_data, tmp_path / "pair", [("static", 0), ("dynamic", 0)], **CUTS)
    grid = train(tiny_data, tmp_path / "grid", GRID, **CUTS)
    assert pair["static-0"] == grid["static-0"] == solo["static-0"]
    for name in solo:
        assert grid[name] == solo[name], name
    lrs = {name: [r["lr"] for r in solo[name][1]] for name in ("static-0", "dynamic-0")}
    assert lrs["static-0"] == [0.01] * 3 and lrs["dynamic-0"][2] < lrs["dynamic-0"][1] == 0.01


@pytest.mark.parametrize("model", ["vgg16", "simple_v3", "lenet", "mlp"])
def test_every_registry_net_packs_exactly(tiny_data, tmp_path, model):
    """Each net's layers stacked (dropout on channels and on features, pooling, biased 5x5 convolutions, a net with
    no convolution): each run of a pack equals it alone."""
    runs = [("static", 0), ("dynamic", 1)]
    over = dict(model=model, epochs=2, **CUTS)
    assert train(tiny_data, tmp_path / "pack", runs, **over) == alone(tiny_data, tmp_path, runs, **over)


def test_a_pack_padded_with_idle_slots_is_its_runs_alone(tiny_data, tmp_path):
    """CUDA pads every pack to its width; here, on the CPU, the same code: two runs in four slots (the idle two train
    copies of the first run on its batches, thrown away) end as each run alone."""
    runs = [("static", 0), ("dynamic", 1)]
    cfg = tiny_config(**CUTS)
    train_pack(cfg, [(s, seed, run_paths(tiny_data, tmp_path / "wide", s, seed)) for s, seed in runs], width=4,
               progress=False)
    padded = {files.run_name(s, seed): result(tiny_data, tmp_path / "wide", s, seed) for s, seed in runs}
    assert padded == alone(tiny_data, tmp_path, runs, **CUTS)


def test_runs_that_stop_leave_the_pack_and_the_others_go_on(tiny_data, tmp_path):
    """static runs reach loss_stop at epoch 3; exp runs (LR down 20x an epoch) never do and train their 6 epochs;
    dynamic-0 cuts its LR: each log equals its run alone."""
    runs = [("static", 0), ("exp", 0), ("static", 1), ("exp", 1), ("dynamic", 0)]
    over = dict(epochs=6, lr=0.1, loss_stop=2.5, exp={"gamma": 0.05}, **CUTS)
    packed = train(tiny_data, tmp_path / "pack", runs, **over)
    solo = alone(tiny_data, tmp_path, runs, **over)
    assert packed == solo
    stops = {name: (summary["stop_reason"], summary["epochs"]) for name, (_, _, summary) in solo.items()}
    assert stops["static-0"] == ("loss_stop", 3) and stops["exp-0"] == ("max_epochs", 6)


def garbage(monkeypatch, victim, make):
    """Feed run `victim` other images: make(x, step) -> x, wherever it trains (alone or packed)."""
    real = assemble.build_member

    def build(cfg, schedule, seed, *args, **kw):
        member = real(cfg, schedule, seed, *args, **kw)
        if member.name == victim:
            batches, original = member.train_batches, member.train_batches.epoch

            def epoch(seed=None):
                for step, (x, y, size) in enumerate(original(seed)):
                    yield make(x, step), y, size

            batches.epoch = epoch
        return member

    monkeypatch.setattr(assemble, "build_member", build)


def noise(x, step):
    """Large, finite and drawn from no random generator (the runs' own draws must stay theirs)."""
    return x * 1000 + torch.sin(torch.arange(x.numel(), dtype=x.dtype) * (step + 1.7)).view_as(x)


@pytest.mark.parametrize("make", [noise,
                                  lambda x, step: x if step < 2 else x * float("nan")],  # NaN from its third batch
                         ids=["noise", "nan"])
def test_a_mates_data_never_reaches_a_run(tiny_data, tmp_path, monkeypatch, make):
    """BatchNorm statistics, dropout and weights of a run are untouched by its mate's data: a mate fed noise, or
    NaN images from the middle of its first epoch (it diverges there and leaves the pack), leaves the run as it is
    alone; and the mate itself ends exactly as it does alone on the same data."""
    garbage(monkeypatch, "static-1", make)
    runs = [("static", 0), ("static", 1), ("dynamic", 0)]
    packed = train(tiny_data, tmp_path / "pack", runs, augment=True, **CUTS)
    solo = alone(tiny_data, tmp_path, runs, augment=True, **CUTS)
    assert packed == solo
    if make(torch.ones(1), 5).isnan().any():
        assert solo["static-1"][2]["stop_reason"] == "diverged" and solo["static-1"][2]["epochs"] == 1
        assert solo["static-0"][2]["stop_reason"] == "max_epochs"


def test_an_interrupted_pack_resumes_each_run_to_its_uninterrupted_bytes(tiny_data, tmp_path, monkeypatch):
    """Checkpoints are each run's own: interrupted after epoch 2 of 4, the pack again resumes every run; and a run
    checkpointed in a pack resumes alone to the same bytes (a pack that splits)."""
    runs = [("static", 0), ("dynamic", 0), ("static", 1)]
    over = dict(epochs=4, checkpoint_every=1, **CUTS)
    whole = train(tiny_data, tmp_path / "whole", runs, **over)
    restore = interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_data, tmp_path / "cut", runs, **over)
    restore()
    for s, seed in runs:
        assert torch.load(run_paths(tiny_data, tmp_path / "cut", s, seed).checkpoint, weights_only=True)["epoch"] == 2
    resumed = train(tiny_data, tmp_path / "cut", runs[:2], **over)  # static-1 resumes alone, below
    resumed.update(train(tiny_data, tmp_path / "cut", runs[2:], **over))
    assert resumed == whole


def test_runs_of_two_configurations_never_share_a_pack(tiny_data, tmp_path):
    cfg = tiny_config()
    a = run_paths(tiny_data, tmp_path / "a", "static", 0)
    b = run_paths(tiny_data, tmp_path / "b", "static", 1)
    other = b.__class__(**{**b.__dict__, "stats": tmp_path / "other-stats.json"})
    with pytest.raises(UserError, match=r"train@static-1: its --stats differs from train@static-0's"):
        train_pack(cfg, [("static", 0, a), ("static", 1, other)], progress=False)
    with pytest.raises(UserError, match="train@static-0 is twice in one pack"):
        train_pack(cfg, [("static", 0, a), ("static", 0, a)], progress=False)


@pytest.mark.parametrize("over, why", [
    ({"model": "resnet18"}, "model resnet18 is a torchvision model, which packing does not cover"),
    ({"weights": None, "freeze": None, "engine": {"compile": "default"}}, "engine.compile compiles one run's net"),
])
def test_a_net_packing_does_not_cover_is_refused_in_one_line(tiny_data, tmp_path, over, why):
    cfg = tiny_config(**over)
    assert array.why_alone(cfg) == why
    runs = [("static", 0, run_paths(tiny_data, tmp_path, "static", 0)),
            ("static", 1, run_paths(tiny_data, tmp_path, "static", 1))]
    with pytest.raises(UserError, match=f"these runs cannot share a pack: {why}; train them one at a time"):
        train_pack(cfg, runs, progress=False)


@pytest.mark.parametrize("name", sorted(models.REGISTRY))
def test_each_nets_layers_are_its_forward(name):
    """array.Stacked runs a net as its layers() list: the same function as its forward()."""
    torch.manual_seed(0)
    net = models.build(name, 5, 16, 0.5).eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(torch.nn.Sequential(*net.layers())(x), net(x))


def test_a_pack_out_of_memory_splits_and_goes_on(tiny_data, tmp_path, monkeypatch, capsys):
    """A pack that runs out of (GPU) memory in its second epoch splits in two, and each half goes on from its runs'
    checkpoints: every run ends as it does alone."""
    runs = [("static", 0), ("dynamic", 0), ("static", 1), ("dynamic", 1)]
    over = dict(epochs=3, checkpoint_every=1, **CUTS)
    real = engine.train_one_epoch

    def short_of_memory(net, members, *args, **kw):
        if len(members) > 2 and members[0].log.epochs_done == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(net, members, *args, **kw)

    monkeypatch.setattr(engine, "train_one_epoch", short_of_memory)
    packed = train(tiny_data, tmp_path / "pack", runs, **over)
    assert ("pack of 4 runs: out of GPU memory; split into packs of 2 and 2, each run going on from its last "
            "checkpoint") in capsys.readouterr().out
    assert packed == alone(tiny_data, tmp_path, runs, **over)
