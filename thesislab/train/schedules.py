"""Learning-rate schedules. Each is a small object the training loop calls after every batch and epoch.

`static` keeps the LR. `dynamic` is the thesis's method (DynamicLR below, pure and unit-tested). The rest
are torch.optim.lr_scheduler's own classes, wrapped, never re-implemented.
"""

from collections import deque

from torch.optim import lr_scheduler

from thesislab.errors import UserError

KEEP, REDUCE, STOP = "keep", "reduce", "stop"


def least_squares_slope(points):
    """Slope of the least-squares line through [(x, y), ...]."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return sxy / sxx


class DynamicLR:
    """The thesis's dynamic learning rate, as docs/design.md pins it down.

    After each epoch, add the monitored accuracy (percent) to a window of the last `window` epochs. When
    the window is full, fit acc = a + slope * epoch. A slope under `slope` percentage points per epoch is a
    plateau: lower the LR (REDUCE) and empty the window, so that the next fit sees only epochs after the
    change. A plateau found after `max_reductions` reductions ends training (STOP).
    """

    def __init__(self, window, slope, factor, max_reductions):
        self.window, self.min_slope = window, slope
        self.factor, self.max_reductions = factor, max_reductions
        self.points = deque(maxlen=window)
        self.reductions = 0
        self.last_slope = None

    def update(self, epoch, acc) -> str:
        self.points.append((epoch, acc))
        if len(self.points) < self.window:
            self.last_slope = None
            return KEEP
        self.last_slope = least_squares_slope(self.points)
        if self.last_slope >= self.min_slope:
            return KEEP
        if self.reductions >= self.max_reductions:
            return STOP
        self.reductions += 1
        self.points.clear()
        return REDUCE

    def state_dict(self):
        return {"points": [list(p) for p in self.points], "reductions": self.reductions}

    def load_state_dict(self, state):
        self.points = deque((tuple(p) for p in state["points"]), maxlen=self.window)
        self.reductions = state["reductions"]


class Schedule:
    """The interface the training loop sees. after_epoch returns True to stop training."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def after_batch(self):
        pass

    def after_epoch(self, epoch, monitored_acc) -> bool:
        return False

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class Static(Schedule):
    pass


class Dynamic(Schedule):
    def __init__(self, optimizer, opts):
        super().__init__(optimizer)
        self.rule = DynamicLR(opts.window, opts.slope, opts.factor, opts.max_reductions)

    def after_epoch(self, epoch, monitored_acc):
        action = self.rule.update(epoch, monitored_acc)
        if action == REDUCE:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.rule.factor
        return action == STOP

    def state_dict(self):
        return self.rule.state_dict()

    def load_state_dict(self, state):
        self.rule.load_state_dict(state)


class TorchEpoch(Schedule):
    """A torch scheduler stepped once an epoch (step, exp, cosine)."""

    def __init__(self, optimizer, scheduler):
        super().__init__(optimizer)
        self.scheduler = scheduler

    def after_epoch(self, epoch, monitored_acc):
        self.scheduler.step()
        return False

    def state_dict(self):
        return self.scheduler.state_dict()

    def load_state_dict(self, state):
        self.scheduler.load_state_dict(state)


class TorchPlateau(TorchEpoch):
    def after_epoch(self, epoch, monitored_acc):
        self.scheduler.step(monitored_acc)
        return False


class TorchOneCycle(TorchEpoch):
    """OneCycleLR moves the LR every batch."""

    def after_batch(self):
        self.scheduler.step()

    def after_epoch(self, epoch, monitored_acc):
        return False


# --- the registry: a schedule's name -> a factory(optimizer, cfg, steps_per_epoch); params are checked here ------


def _torch_epoch(make_scheduler):
    return lambda optimizer, cfg, steps: TorchEpoch(optimizer, make_scheduler(optimizer, cfg))


def _plateau(optimizer, cfg, steps):
    opts = cfg.plateau
    return TorchPlateau(optimizer, lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=opts.factor,
                                                                  patience=opts.patience))


def _onecycle(optimizer, cfg, steps):
    return TorchOneCycle(optimizer, lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps,
                                                            pct_start=cfg.onecycle.pct_start))


REGISTRY = {
    "static": lambda optimizer, cfg, steps: Static(optimizer),
    "dynamic": lambda optimizer, cfg, steps: Dynamic(optimizer, cfg.dynamic),
    "step": _torch_epoch(lambda o, cfg: lr_scheduler.StepLR(o, cfg.step.step_size, cfg.step.gamma)),
    "exp": _torch_epoch(lambda o, cfg: lr_scheduler.ExponentialLR(o, cfg.exp.gamma)),
    "cosine": _torch_epoch(lambda o, cfg: lr_scheduler.CosineAnnealingLR(o, T_max=cfg.epochs)),
    "onecycle": _onecycle,
    "plateau": _plateau,
}


def check_names(names):
    """Refuse a schedule name the registry lacks, naming the key (the matrix item, or params.yaml's list)."""
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise UserError(f"params.yaml: schedules: {unknown[0]!r} is not a schedule; choose from: {', '.join(REGISTRY)}")


def make(name, optimizer, cfg, steps_per_epoch) -> Schedule:
    check_names([name])
    return REGISTRY[name](optimizer, cfg, steps_per_epoch)
