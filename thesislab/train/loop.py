"""The training loop: epoch after epoch, every run of a pack at once, each until its own stop rule fires."""

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class StopRules:
    epochs: int  # the most epochs a run may take
    loss_stop: float  # stop once an epoch's mean train loss is below this
    monitor: str  # "val" or "test": the split whose accuracy the schedule sees
    checkpoint_every: int  # epochs between checkpoints (0: none)


def fit(pack, rules: StopRules, save_checkpoint, finish, say=print, progress=True):
    """Train each run of the pack from the epoch after those in its log (a resumed run's) until its stop rule fires;
    then finish(member, why it stopped), and the others go on. save_checkpoint(member, epoch) every
    checkpoint_every epochs."""
    for m in [m for m in pack.members if m.log.epochs_done >= rules.epochs]:  # resumed with every epoch done
        pack.leave(m)
        finish(m, "max_epochs")
    while pack.members:
        members = list(pack.members)
        epochs = [m.log.epochs_done + 1 for m in members]
        start = time.perf_counter()
        lrs = [m.lr for m in members]  # the rate each trains at this epoch
        trains = pack.train_epoch(epochs, desc=_desc(members, epochs, rules.epochs), progress=progress)
        scores = pack.evaluate()
        seconds = time.perf_counter() - start
        for m, epoch, lr, train, score in zip(members, epochs, lrs, trains, scores):
            row = m.log.log(epoch, lr, train, score, seconds=seconds)
            say(epoch_line(m.name, rules.epochs, row))
            why = stop_reason(m, epoch, train, score, rules)
            if why:
                pack.leave(m)
                finish(m, why)
            elif rules.checkpoint_every and epoch % rules.checkpoint_every == 0:
                save_checkpoint(m, epoch)


def stop_reason(member, epoch, train, scores, rules):
    """Why the run stops after this epoch, or None."""
    if train["diverged"]:
        return "diverged"
    # The schedule sees the monitored split's accuracy and may lower the LR for the next epoch (the dynamic rule at
    # a plateau); it answers True when a plateau persists after its last allowed cut.
    plateau = member.schedule.after_epoch(epoch, scores[rules.monitor]["acc"])
    if train["loss"] < rules.loss_stop:
        return "loss_stop"
    if plateau:
        return "plateau"
    if epoch >= rules.epochs:
        return "max_epochs"
    return None


def _desc(members, epochs, most):
    others = f" +{len(members) - 1}" if len(members) > 1 else ""
    return f"{members[0].name}{others} epoch {epochs[0]}/{most}"


def epoch_line(name, epochs, r):
    val = f"  val {r['val_acc']:5.1f}%" if r["val_acc"] is not None else ""
    return (f"{name} epoch {int(r['epoch']):>3}/{epochs}  lr {r['lr']:.3g}  train loss {r['train_loss']:.4f} "
            f"acc {r['train_acc']:5.1f}%{val}  test {r['test_acc']:5.1f}%  {r['seconds']:.1f}s")
