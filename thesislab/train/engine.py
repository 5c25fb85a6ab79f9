"""One explicit epoch of training and one evaluation, each returning a dict per run (pytorch/examples style), for
a pack of runs trained as one computation (a run alone is a pack of one: trainer.py).

Loss and accuracy are summed per image on the device and read once an epoch, so a GPU step never waits
for the host. On the CPU, where reading is free, a non-finite loss is caught at the step it appears
(in one process: under DDP every rank must take every step, so it is caught at the epoch's end); a
finite but exploded loss is caught from the epoch's mean.
"""

import math
import time

import torch
import torch.nn.functional as F

from thesislab.train import checkpoint


class _Sums:
    """One run's loss and accuracy over an epoch or a split, summed per image on the device."""

    def __init__(self, device):
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.seen = torch.zeros((), device=device, dtype=torch.long)

    def add(self, item_losses, logits, y):
        self.loss += item_losses.detach()
        self.correct += (logits.argmax(1) == y).sum()
        self.seen += y.shape[0]


def train_one_epoch(net, members, seeds, width, rt, bar=None) -> tuple:
    """One pass over each run's training batches (seeds: each run's batch seed), the pack's runs in lockstep.
    Returns ([per member: loss and acc (percent) per image, images, seconds, diverged], {member: the model state it
    diverged in}): diverged means a NaN or infinite loss was seen, or the epoch's mean loss is above the run's
    max_loss (a single spiky batch may recover; a whole epoch that high has not)."""
    net.train()
    sums = [_Sums(rt.device) for _ in members]
    active, diverged = list(members), {}
    start = time.perf_counter()
    for step in zip(*(m.train_batches.epoch(s) for m, s in zip(members, seeds))):
        xs = [step[0][0]] * width  # an idle slot trains on the first run's batch, thrown away
        for m, (x, _, _) in zip(members, step):
            xs[m.slot] = x
        with rt.autocast():
            logits = net(xs)
        item_losses = [F.cross_entropy(logits[m.slot].float(), y, reduction="sum") for m, (_, y, _) in
                       zip(members, step)]
        # Each run's loss: the sum over this rank's images / global batch, times world (DDP averages gradients over
        # ranks): every image weighs the same, whatever the batch's size or split. Summed over the runs, each run's
        # weights get exactly the gradient of its own loss.
        loss = None
        for i, m in enumerate(members):
            if m in active:
                term = item_losses[i] * (rt.world / step[i][2])
                loss = term if loss is None else loss + term
        for m in active:
            m.optimizer.zero_grad(set_to_none=True)
        net.zero_grad()
        loss.backward()
        net.share_grads()
        for i, m in enumerate(members):
            if m in active:
                m.optimizer.step()
                m.schedule.after_batch()
                sums[i].add(item_losses[i], logits[m.slot], step[i][1])
        if bar is not None:
            bar.update(1)
        if rt.check_each_step:
            for i, m in enumerate(members):
                if m in active and not math.isfinite(item_losses[i].item()):
                    # As alone: this step's update made, then the run stops; its slot trains on until the epoch
                    # ends, so the state it stopped in is kept aside.
                    active.remove(m)
                    diverged[m] = checkpoint.owned(m.model.state_dict())
            if not active:
                break
    for s in sums:
        rt.sum_across(s.loss, s.correct, s.seen)
    rt.synchronize()
    seconds = time.perf_counter() - start
    results = []
    for m, s in zip(members, sums):
        n = max(int(s.seen), 1)
        mean_loss = s.loss.item() / n
        results.append({"loss": mean_loss, "acc": 100.0 * int(s.correct) / n, "images": int(s.seen),
                        "seconds": seconds, "diverged": m in diverged or not mean_loss <= m.max_loss})
    return results, diverged


@torch.no_grad()
def evaluate(net, batches, slots, width, rt) -> list:
    """Mean loss and accuracy (percent) over a split, per run (batches: each run's Batches of it, one object where
    they share the split; slots: each run's slot in the pack), sharded over ranks and summed; None for an empty
    split (never scored as 0%)."""
    net.eval()
    shared = all(b is batches[0] for b in batches)
    streams = [batches[0].epoch()] if shared else [b.epoch() for b in batches]
    sums = [_Sums(rt.device) for _ in batches]
    for step in zip(*streams):
        if shared:  # one batch, the same for every run
            step = step * len(batches)
        if step[0][1].shape[0] == 0:  # this rank's share of a short last batch (DDP: one run)
            continue
        xs = [step[0][0]] * width
        for slot, (x, _, _) in zip(slots, step):
            xs[slot] = x
        with rt.autocast():
            logits = net(xs)
        for i, (slot, (_, y, _)) in enumerate(zip(slots, step)):
            sums[i].add(F.cross_entropy(logits[slot].float(), y, reduction="sum"), logits[slot], y)
    scores = []
    for s in sums:
        rt.sum_across(s.loss, s.correct, s.seen)
        n = int(s.seen)
        scores.append({"loss": None, "acc": None} if n == 0 else {"loss": s.loss.item() / n,
                                                                 "acc": 100.0 * int(s.correct) / n})
    return scores


@torch.no_grad()
def predict(model, batches, rt) -> torch.Tensor:
    """Predicted class of every image of a split, in order, on the CPU (this process only)."""
    model.eval()
    out = []
    for x, y, _ in batches.epoch():
        if y.shape[0] == 0:
            continue
        with rt.autocast():
            out.append(model(x).argmax(1))
    return torch.cat(out).cpu()
