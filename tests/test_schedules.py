import pytest
import torch
from conftest import tiny_config

from thesislab.config import Dynamic as DynamicOptions
from thesislab.train import schedules
from thesislab.train.schedules import KEEP, REDUCE, STOP, DynamicLR, least_squares_slope


def test_slope_matches_hand_computation():
    # x = 1..4, y = 2, 4, 5, 9: mean x 2.5, mean y 5; sxy = (-1.5)(-3)+(-0.5)(-1)+(0.5)(0)+(1.5)(4) = 11; sxx = 5
    assert least_squares_slope([(1, 2), (2, 4), (3, 5), (4, 9)]) == pytest.approx(2.2)
    assert least_squares_slope([(5, 70.0), (6, 70.0), (7, 70.0)]) == 0


def test_waits_for_a_full_window():
    rule = DynamicLR(window=4, slope=0.03, factor=0.1, max_reductions=3)
    assert [rule.update(e, 50.0) for e in (1, 2, 3)] == [KEEP, KEEP, KEEP]
    assert rule.last_slope is None
    assert rule.update(4, 50.0) == REDUCE  # flat: slope 0 < 0.03


def test_rising_accuracy_keeps_the_lr():
    rule = DynamicLR(window=4, slope=0.03, factor=0.1, max_reductions=3)
    actions = [rule.update(e, 50 + 0.5 * e) for e in range(1, 20)]
    assert set(actions) == {KEEP} and rule.last_slope == pytest.approx(0.5)


def test_threshold_is_strict_below():
    rule = DynamicLR(window=3, slope=0.5, factor=0.1, max_reductions=3)
    # slope exactly 0.5: not a plateau
    assert [rule.update(e, 0.5 * e) for e in (1, 2, 3)] == [KEEP, KEEP, KEEP]
    # next window (2, 3, 4) with acc 1, 1.5, 1.9: slope 0.45 < 0.5
    assert rule.update(4, 1.9) == REDUCE


def test_window_slides_until_a_plateau_then_empties():
    rule = DynamicLR(window=3, slope=0.03, factor=0.1, max_reductions=3)
    seq = [10, 20, 30, 31, 31, 31]  # windows: (10,20,30) rising, (20,30,31), (30,31,31) 0.5, (31,31,31) 0
    assert [rule.update(e, a) for e, a in enumerate(seq, 1)] == [KEEP, KEEP, KEEP, KEEP, KEEP, REDUCE]
    assert rule.reductions == 1 and len(rule.points) == 0
    # Refill with post-change epochs only: two more epochs cannot trigger, the third can.
    assert [rule.update(e, 31.0) for e in (7, 8)] == [KEEP, KEEP]
    assert rule.update(9, 31.0) == REDUCE


def test_stops_at_the_plateau_after_max_reductions():
    rule = DynamicLR(window=2, slope=0.03, factor=0.5, max_reductions=2)
    actions = [rule.update(e, 60.0) for e in range(1, 7)]
    assert actions == [KEEP, REDUCE, KEEP, REDUCE, KEEP, STOP]
    assert rule.reductions == 2


def test_zero_max_reductions_stops_at_the_first_plateau():
    rule = DynamicLR(window=2, slope=0.03, factor=0.5, max_reductions=0)
    assert [rule.update(1, 1.0), rule.update(2, 1.0)] == [KEEP, STOP]


def test_falling_accuracy_is_a_plateau():
    rule = DynamicLR(window=3, slope=0.03, factor=0.1, max_reductions=1)
    assert [rule.update(e, 90 - e) for e in (1, 2, 3)] == [KEEP, KEEP, REDUCE]


def test_state_round_trip():
    rule = DynamicLR(window=3, slope=0.03, factor=0.1, max_reductions=3)
    for e, a in enumerate([10, 11, 11, 11, 11], 1):
        rule.update(e, a)
    again = DynamicLR(window=3, slope=0.03, factor=0.1, max_reductions=3)
    again.load_state_dict(rule.state_dict())
    assert [rule.update(e, 11) for e in (6, 7, 8)] == [again.update(e, 11) for e in (6, 7, 8)]


def test_a_restored_window_keeps_sliding():
    """Resumed from a full window, the rule must forget its oldest epoch as the uninterrupted one does."""
    rising, flat = [10, 20, 30], [31, 31, 31]
    whole = DynamicLR(window=3, slope=0.5, factor=0.1, max_reductions=3)
    for e, a in enumerate(rising, 1):
        whole.update(e, a)
    resumed = DynamicLR(window=3, slope=0.5, factor=0.1, max_reductions=3)
    resumed.load_state_dict(whole.state_dict())
    expected = [whole.update(e, a) for e, a in enumerate(flat, 4)]
    assert [resumed.update(e, a) for e, a in enumerate(flat, 4)] == expected == [KEEP, KEEP, REDUCE]


def optimizer(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr, momentum=0.9)


def test_dynamic_schedule_multiplies_the_optimizer_lr():
    opt = optimizer(0.1)
    sched = schedules.Dynamic(opt, DynamicOptions(window=2, slope=0.03, factor=0.1, max_reductions=1))
    assert [sched.after_epoch(e, 50.0) for e in (1, 2)] == [False, False]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    assert [sched.after_epoch(e, 50.0) for e in (3, 4)] == [False, True]  # plateau after 1 reduction: stop
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def lrs(name, epochs=6, steps=1, **over):
    cfg = tiny_config(epochs=epochs, **over)
    opt = optimizer(cfg.lr)
    sched = schedules.make(name, opt, cfg, steps)
    out = []
    for e in range(1, epochs + 1):
        out.append(opt.param_groups[0]["lr"])
        for _ in range(steps):
            opt.step()
            sched.after_batch()
        sched.after_epoch(e, 50.0)
    return out


def test_static_keeps_the_lr():
    assert lrs("static") == [0.01] * 6


def test_only_the_dynamic_rule_ends_training():
    """after_epoch's True means stop: static and torch's schedules never stop a run early."""
    for name in ("static", "step", "exp", "cosine", "plateau", "onecycle"):
        cfg = tiny_config(epochs=6)
        opt = optimizer(cfg.lr)
        sched = schedules.make(name, opt, cfg, 1)
        stops = []
        for e in range(1, 7):
            opt.step()
            sched.after_batch()
            stops.append(sched.after_epoch(e, 50.0))
        assert stops == [False] * 6, name


def test_plateau_watches_for_a_rise_and_cuts_by_its_factor():
    """mode max: a rising accuracy is progress (no cut); a flat one is cut by `factor` after `patience`."""
    over = {"plateau": {"factor": 0.5, "patience": 1}}
    cfg = tiny_config(epochs=6, **over)
    opt = optimizer(cfg.lr)
    sched = schedules.make("plateau", opt, cfg, 1)
    seen = []
    for e, acc in enumerate([10.0, 20.0, 30.0, 40.0, 40.0, 40.0], 1):
        sched.after_epoch(e, acc)
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([0.01, 0.01, 0.01, 0.01, 0.01, 0.005])


def onecycle_lrs(cfg, steps_per_epoch=10):
    """The LR at every batch of a OneCycle run of cfg.epochs epochs."""
    opt = optimizer(cfg.lr)
    sched = schedules.make("onecycle", opt, cfg, steps_per_epoch)
    seen = []
    for _ in range(cfg.epochs * steps_per_epoch):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.after_batch()
    return seen


def test_onecycle_peaks_where_pct_start_says():
    cfg = tiny_config(epochs=4, onecycle={"pct_start": 0.5})
    seen = onecycle_lrs(cfg)
    assert seen.index(max(seen)) == 19  # OneCycleLR's peak step: pct_start * 40 - 1


def test_torch_schedules_are_torchs_own():
    assert lrs("step", step={"step_size": 2, "gamma": 0.5}) == pytest.approx(
        [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025])
    assert lrs("exp", exp={"gamma": 0.5}) == pytest.approx([0.01 * 0.5**k for k in range(6)])
    cosine = lrs("cosine")
    assert cosine[0] == pytest.approx(0.01) and cosine == sorted(cosine, reverse=True)
    # plateau: a flat accuracy triggers a cut after `patience` + 1 epochs
    assert lrs("plateau", plateau={"factor": 0.1, "patience": 1})[:4] == pytest.approx(
        [0.01, 0.01, 0.01, 0.001])


def test_onecycle_moves_every_batch_and_peaks_at_lr():
    cfg = tiny_config(epochs=4)
    seen = onecycle_lrs(cfg)
    assert max(seen) == pytest.approx(cfg.lr, rel=1e-3)
    assert seen[0] < cfg.lr / 10 and seen[-1] < cfg.lr / 100


def test_every_registered_name_builds():
    for name in schedules.REGISTRY:
        assert isinstance(schedules.make(name, optimizer(), tiny_config(), 5), schedules.Schedule)


def test_an_unknown_schedule_is_one_line_naming_the_key():
    from thesislab.errors import UserError

    with pytest.raises(UserError, match=r"^params.yaml: schedules: 'warmup' is not a schedule; choose from: static, "
                                         r"dynamic, step, exp, cosine, onecycle, plateau$"):
        schedules.check_names(["static", "warmup"])
