"""The training loop: epoch after epoch until a stop rule fires."""

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class StopRules:
    epochs: int  # the most epochs a run may take
    loss_stop: float  # stop once an epoch's mean train loss is below this
    monitor: str  # "val" or "test": the split whose accuracy the schedule sees
    checkpoint_every: int  # epochs between checkpoints (0: none)


def fit(trainer, log, rules: StopRules, save_checkpoint, say=print, name="", progress=True) -> str:
    """Train the epochs after those already in `log` (a resumed run's); return why training stopped."""
    for epoch in range(log.epochs_done + 1, rules.epochs + 1):
        start = time.perf_counter()
        lr = trainer.lr  # the rate this epoch trains at
        train = trainer.train_epoch(epoch, desc=f"{name} epoch {epoch}/{rules.epochs}", progress=progress)
        scores = trainer.evaluate()
        row = log.log(epoch, lr, train, scores, seconds=time.perf_counter() - start)
        say(epoch_line(name, rules.epochs, row))
        if train["diverged"]:
            return "diverged"
        # The schedule sees the monitored split's accuracy and may lower the LR for the next epoch (the dynamic
        # rule at a plateau); it answers True when a plateau persists after its last allowed cut.
        plateau = trainer.schedule.after_epoch(epoch, scores[rules.monitor]["acc"])
        if train["loss"] < rules.loss_stop:
            return "loss_stop"
        if plateau:
            return "plateau"
        if rules.checkpoint_every and epoch % rules.checkpoint_every == 0 and epoch < rules.epochs:
            save_checkpoint(epoch, log.rows)
    return "max_epochs"


def epoch_line(name, epochs, r):
    val = f"  val {r['val_acc']:5.1f}%" if r["val_acc"] is not None else ""
    return (f"{name} epoch {int(r['epoch']):>3}/{epochs}  lr {r['lr']:.3g}  train loss {r['train_loss']:.4f} "
            f"acc {r['train_acc']:5.1f}%{val}  test {r['test_acc']:5.1f}%  {r['seconds']:.1f}s")
