"""One explicit epoch of training and one evaluation, each returning a dict (pytorch/examples style).

Loss and accuracy are summed per image on the device and read once an epoch, so a GPU step never waits
for the host. On the CPU, where reading is free, a non-finite loss is caught at the step it appears
(in one process: under DDP every rank must take every step, so it is caught at the epoch's end); a
finite but exploded loss is caught from the epoch's mean.
"""

import math
import time

import torch
import torch.nn.functional as F


def train_one_epoch(model, batches, optimizer, schedule, seed, rt, bar=None, max_loss=math.inf) -> dict:
    """One pass over the training batches. Returns loss and acc (percent) per image, images, seconds,
    and diverged: a NaN or infinite loss was seen, or the epoch's mean loss is above max_loss (a single
    spiky batch may recover; a whole epoch that high has not)."""
    model.train()
    loss_sum = torch.zeros((), device=rt.device)
    correct = torch.zeros((), device=rt.device, dtype=torch.long)
    seen = torch.zeros((), device=rt.device, dtype=torch.long)
    diverged = False
    start = time.perf_counter()
    for x, y, global_size in batches.epoch(seed):
        with rt.autocast():
            logits = model(x)
        item_losses = F.cross_entropy(logits.float(), y, reduction="sum")
        # Sum over this rank's images / global batch, times world (DDP averages gradients over ranks):
        # every image weighs the same, whatever the batch's size or split.
        loss = item_losses * (rt.world / global_size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.after_batch()
        loss_sum += item_losses.detach()
        correct += (logits.argmax(1) == y).sum()
        seen += y.shape[0]
        if bar is not None:
            bar.update(1)
        if rt.check_each_step and not math.isfinite(item_losses.item()):
            diverged = True
            break
    rt.sum_across(loss_sum, correct, seen)
    rt.synchronize()
    seconds = time.perf_counter() - start
    n = max(int(seen), 1)
    mean_loss = loss_sum.item() / n
    return {
        "loss": mean_loss,
        "acc": 100.0 * int(correct) / n,
        "images": int(seen),
        "seconds": seconds,
        "diverged": diverged or not mean_loss <= max_loss,
    }


@torch.no_grad()
def evaluate(model, batches, rt) -> dict:
    """Mean loss and accuracy (percent) over a split, sharded over ranks and summed; None for an empty split
    (never scored as 0%)."""
    model.eval()
    loss_sum = torch.zeros((), device=rt.device)
    correct = torch.zeros((), device=rt.device, dtype=torch.long)
    seen = torch.zeros((), device=rt.device, dtype=torch.long)
    for x, y, _ in batches.epoch():
        if y.shape[0] == 0:  # this rank's share of a short last batch
            continue
        with rt.autocast():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        seen += y.shape[0]
    rt.sum_across(loss_sum, correct, seen)
    n = int(seen)
    if n == 0:
        return {"loss": None, "acc": None}
    return {"loss": loss_sum.item() / n, "acc": 100.0 * int(correct) / n}


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
