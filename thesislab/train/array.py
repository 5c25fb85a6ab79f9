"""Training arrays: K runs of one net that differ only in seed and schedule, trained as one batched computation.

The runs' mini-batches go through K stacked copies of the net in one step (HFTA's fused layers): activations are
channel-stacked, [N, K*C, H, W], through grouped convolutions (groups = K) and BatchNorm over K*C channels; after
the flatten they are run-major, [K, N, F], through batched products (baddbmm). Each run keeps its own module and
optimizer: its parameters and BatchNorm buffers are views into the stacked ones (so its optimizer updates the
stacked weights in place, and its state_dict is exactly a run's), each run's dropout masks come from its own
generator, and its loss is its own. So each run gets its own gradient: the sum of independent losses gives each
run's weights exactly the gradient of its own loss.

The same bits as alone, on the CPU with portable arithmetic: each fused layer computes every group as the run's
own layer would, measured layer by layer at the registry nets' shapes, forward and backward (tests/test_pack.py), with one exception: oneDNN's weight gradient of a convolution with 3 input
channels a group rounds otherwise than a plain one's, so that layer (every net's first) is looped over the runs on
the CPU. On CUDA every layer is fused; there the bits depend on the pack's width (runtime.computation records it).

A run alone is not converted: it trains its own module (`Single`), the same loop calling it.
"""

import torch
import torch.nn.functional as F
from torch import nn

from thesislab.train import models

# The layers a pack stacks; any other makes the net train alone.
ELEMENTWISE = (nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Identity)  # per channel: the same on stacked channels


def why_alone(cfg, world=1):
    """Why runs of these params cannot share a pack (one line), or None."""
    if cfg.model not in models.REGISTRY:
        return f"model {cfg.model} is a torchvision model, which packing does not cover"
    if cfg.freeze:
        return "freeze: backbone trains a part of each net"
    if cfg.engine.compile:
        return "engine.compile compiles one run's net"
    if world > 1 or cfg.engine.nproc > 1:
        return "engine.nproc > 1 trains one run over several processes"
    return None


MOST = 64  # runs a pack may hold: beyond this a GPU gains little (BENCHMARKS.md) and a failure costs more runs
MEMORY_SHARE = 0.7  # of the GPU's memory a pack may plan to fill; an estimate too low splits the pack (run.py)


def runs_that_fit(cfg, runs) -> int:
    """How many runs of these params one GPU's memory holds as a pack, from its total memory (the same on every
    GPU of a model, so that a sweep's packs have one width run after run): each run's weights, gradients and
    momentum, and the activations a step keeps for its backward pass, estimated from one image's forward pass.
    At most `runs` and MOST."""
    if cfg.model not in models.REGISTRY:
        return 1
    per_run = run_bytes(cfg)
    total = torch.cuda.get_device_properties(0).total_memory
    return max(1, min(runs, MOST, int(MEMORY_SHARE * total // per_run)))


def run_bytes(cfg) -> int:
    """Bytes one run of a pack needs on the GPU, estimated (float32 throughout; bf16 autocast needs less)."""
    net = models.build(cfg.model, 11, cfg.image_size, cfg.dropout).eval()
    kept = []
    hooks = [m.register_forward_hook(lambda m, i, o: kept.append(o.numel())) for m in net.modules()
             if not list(m.children())]
    with torch.no_grad():
        net(torch.zeros(1, 3, cfg.image_size, cfg.image_size))
    for h in hooks:
        h.remove()
    params = sum(p.numel() for p in net.parameters())
    train = cfg.batch_size * sum(kept) * 2  # each layer's output kept for the backward pass, and its gradient
    evaluation = min(cfg.engine.eval_batch_size, 1024) * max(kept) * 2
    return 4 * (4 * params + max(train, evaluation))


class Single:
    """One run's net, called as a pack's is: a list of one batch in, a list of one batch of logits out. Its dropout
    draws from the global generator, seeded each epoch (as every run alone always has)."""

    def __init__(self, net):
        self.net = net  # the run's module, possibly under DDP or torch.compile

    def __call__(self, xs):
        return [self.net(xs[0])]

    def train(self, mode=True):
        self.net.train(mode)

    def eval(self):
        self.net.eval()

    def seed_dropout(self, seeds, device):
        torch.manual_seed(seeds[0])

    def zero_grad(self):
        pass  # its optimizer owns every parameter

    def share_grads(self):
        pass


class Stacked(nn.Module):
    """K runs' modules (of one registry net, built and placed on the device) as one: see the module's docstring.
    After this, each run's parameters and buffers are views into this module's: build the runs' optimizers after."""

    def __init__(self, nets, loop_rgb_convs):
        super().__init__()
        self.k = len(nets)
        plans = [net.layers() for net in nets]
        self.ops = nn.ModuleList(_op([plan[i] for plan in plans], loop_rgb_convs) for i in range(len(plans[0])))
        self.generators = None

    def forward(self, xs):
        x, layout = list(xs), LIST
        for op in self.ops:
            # A layer that keeps its layout (ReLU, pooling, dropout) takes the runs' images stacked.
            want = op.layout or (STACKED if layout == LIST else layout)
            x = to_layout(x, layout, want, self.k)
            x = op(x, self.generators) if isinstance(op, Dropout) else op(x)
            layout = want
        return to_layout(x, layout, LIST, self.k)

    def seed_dropout(self, seeds, device):
        self.generators = [torch.Generator(device).manual_seed(s) for s in seeds]

    def share_grads(self):
        """Give each run's parameters their slices of the stacked gradients (its optimizer reads them there)."""
        for op in self.ops:
            if hasattr(op, "share_grads"):
                op.share_grads()


# --- layouts ---------------------------------------------------------------------------------------------------

LIST, STACKED, RUNS = "list", "stacked", "runs"  # K tensors as alone | [N, K*C, H, W] | [K, N, F]


def to_layout(x, have, want, k):
    if have == want:
        return x
    if have == LIST and want == STACKED:
        return _like(torch.cat(x, 1), x[0])
    if have == STACKED and want == LIST:
        c = x.shape[1] // k
        return [_like(x[:, i * c:(i + 1) * c], x) for i in range(k)]
    if have == STACKED and want == RUNS:  # the flatten: each run's [N, C*H*W] in the order flatten(1) gives alone
        n = x.shape[0]
        return x.unflatten(1, (k, -1)).transpose(0, 1).reshape(k, n, -1)
    if have == LIST and want == RUNS:
        return torch.stack([t.flatten(1) for t in x])
    if have == RUNS and want == LIST:
        return list(x.unbind(0))
    raise ValueError(f"no layout change from {have} to {want}")


def _format(model):
    """The memory format of a run's own tensor like `model`: channels_last where the run's is."""
    if model.dim() == 4 and model.is_contiguous(memory_format=torch.channels_last) and not model.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _like(t, model):
    """t laid out as a run's own activation would be."""
    return t.contiguous(memory_format=_format(model))


# --- the stacked layers ------------------------------------------------------------------------------------------

def _op(peers, loop_rgb_convs):
    first = peers[0]
    if isinstance(first, nn.Conv2d):
        if loop_rgb_convs and first.in_channels == 3:
            return Looped(peers)
        return Conv(peers)
    if isinstance(first, nn.BatchNorm2d):
        return BatchNorm(peers)
    if isinstance(first, nn.Linear):
        return Linear(peers)
    if isinstance(first, nn.Dropout):
        return Dropout(first.p)
    if isinstance(first, nn.Flatten):
        return Flatten()
    if isinstance(first, ELEMENTWISE):
        return Elementwise(first)
    raise TypeError(f"{type(first).__name__} layers cannot be stacked")


def _stack(tensors, new_dim=False):
    """The runs' tensors joined along dim 0 (concatenated, or along a new dim 0), laid out as a run's is."""
    parts = [t.detach() for t in tensors]
    return _like(torch.stack(parts) if new_dim else torch.cat(parts), parts[0])


def _alias(module, name, stacked, k, size=None):
    """Make the run's parameter or buffer `name` a view of its slice of `stacked` (dim 0: rows k*size.. or item k)."""
    part = stacked.detach()[k * size:(k + 1) * size] if size is not None else stacked.detach()[k]
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(part, requires_grad=old.requires_grad))
    else:
        module._buffers[name] = part


def _share(stacked, modules, name, size=None):
    grad = stacked.grad
    for k, module in enumerate(modules):
        param = getattr(module, name)
        if grad is None:
            param.grad = None
        else:
            param.grad = grad[k * size:(k + 1) * size] if size is not None else grad[k]


class Conv(nn.Module):
    """Every run's convolution as one grouped convolution over the stacked channels."""

    layout = STACKED

    def __init__(self, convs):
        super().__init__()
        c = convs[0]
        assert c.groups == 1, "the registry nets' convolutions are ungrouped"
        self.stride, self.padding, self.dilation, self.k = c.stride, c.padding, c.dilation, len(convs)
        self.out = c.out_channels
        self.weight = nn.Parameter(_stack([m.weight for m in convs]))
        self.bias = nn.Parameter(_stack([m.bias for m in convs])) if c.bias is not None else None
        self.runs = convs
        for k, m in enumerate(convs):
            _alias(m, "weight", self.weight, k, self.out)
            if self.bias is not None:
                _alias(m, "bias", self.bias, k, self.out)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.k)

    def share_grads(self):
        _share(self.weight, self.runs, "weight", self.out)
        if self.bias is not None:
            _share(self.bias, self.runs, "bias", self.out)


class BatchNorm(nn.Module):
    """Every run's BatchNorm as one over the stacked channels: statistics are per channel, so per run."""

    layout = STACKED

    def __init__(self, norms):
        super().__init__()
        b = norms[0]
        self.eps, self.momentum, self.c = b.eps, b.momentum, b.num_features
        self.weight = nn.Parameter(_stack([m.weight for m in norms]))
        self.bias = nn.Parameter(_stack([m.bias for m in norms]))
        self.register_buffer("running_mean", _stack([m.running_mean for m in norms]))
        self.register_buffer("running_var", _stack([m.running_var for m in norms]))
        # Each run's count is its own element (runs resumed at other epochs count other numbers of batches).
        self.register_buffer("num_batches_tracked", torch.stack([m.num_batches_tracked.detach() for m in norms]))
        self.runs = norms
        for k, m in enumerate(norms):
            for name in ("weight", "bias", "running_mean", "running_var"):
                _alias(m, name, getattr(self, name), k, self.c)
            _alias(m, "num_batches_tracked", self.num_batches_tracked, k)

    def forward(self, x):
        if self.training:
            self.num_batches_tracked.add_(1)  # as nn.BatchNorm2d counts (momentum is set: the count is only kept)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                            self.momentum, self.eps)

    def share_grads(self):
        _share(self.weight, self.runs, "weight", self.c)
        _share(self.bias, self.runs, "bias", self.c)


class Linear(nn.Module):
    """Every run's Linear layer as one batched product, run-major: [K, N, F] -> [K, N, O]."""

    layout = RUNS

    def __init__(self, linears):
        super().__init__()
        self.weight = nn.Parameter(_stack([m.weight for m in linears], new_dim=True))  # [K, O, F]
        self.bias = nn.Parameter(_stack([m.bias for m in linears], new_dim=True))  # [K, O]
        self.runs = linears
        for k, m in enumerate(linears):
            _alias(m, "weight", self.weight, k)
            _alias(m, "bias", self.bias, k)

    def forward(self, x):
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))

    def share_grads(self):
        _share(self.weight, self.runs, "weight")
        _share(self.bias, self.runs, "bias")


class Dropout(nn.Module):
    """Each run's mask from its own generator, drawn as F.dropout draws it alone (a Bernoulli tensor laid out as
    the run's activation, divided by 1 - p), so that a run's masks do not depend on its pack."""

    layout = None  # keeps the layout it is given

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x, generators):
        if not self.training or self.p == 0:
            return x
        keep = 1 - self.p
        if x.dim() == 4:  # stacked
            c = x.shape[1] // len(generators)
            parts = [x[:, k * c:(k + 1) * c] for k in range(len(generators))]
            masks = [torch.empty_like(t, memory_format=_format(x)).bernoulli_(keep, generator=g).div_(keep)
                     for t, g in zip(parts, generators)]
            return x * _like(torch.cat(masks, 1), x)
        masks = [torch.empty_like(x[k]).bernoulli_(keep, generator=g).div_(keep) for k, g in enumerate(generators)]
        return x * torch.stack(masks)


class Flatten(nn.Module):
    layout = RUNS

    def forward(self, x):
        return x


class Elementwise(nn.Module):
    """ReLU, pooling: the same computation per channel, so the same on stacked channels or run-major features."""

    layout = None

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)


class Looped(nn.Module):
    """Each run's own layer on its own activation, as alone: for a layer whose fused form rounds otherwise."""

    layout = LIST

    def __init__(self, peers):
        super().__init__()
        self.runs = nn.ModuleList(peers)

    def forward(self, xs):
        return [m(x) for m, x in zip(self.runs, xs)]
