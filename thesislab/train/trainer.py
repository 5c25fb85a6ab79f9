"""A run's moving parts (model, optimizer, LR schedule, batches) and the three things an epoch does with them."""

import torch
from tqdm import tqdm

from thesislab.train import engine
from thesislab.train.batches import epoch_seed


class Trainer:
    def __init__(self, model, net, optimizer, schedule, train_batches, eval_batches, rt, seed, max_loss):
        self.model = model  # the plain module: its state_dict is what is saved
        self.net = net  # what is called: the model, possibly under DDP and torch.compile
        self.optimizer, self.schedule = optimizer, schedule
        self.train_batches = train_batches
        self.eval_batches = eval_batches  # {"test": ..., "val": ... when a validation split is held out}
        self.rt, self.seed = rt, seed
        self.max_loss = max_loss  # an epoch's mean loss above this is divergence

    @property
    def lr(self):
        return self.optimizer.param_groups[0]["lr"]

    def train_epoch(self, epoch, desc="", progress=True) -> dict:
        # Dropout masks and batch order come from (seed, epoch), so a resumed run repeats them exactly.
        torch.manual_seed(epoch_seed(self.seed, epoch, "dropout"))
        with tqdm(total=len(self.train_batches), desc=desc, unit="step", leave=False,
                  disable=None if progress else True) as bar:
            result = engine.train_one_epoch(self.net, self.train_batches, self.optimizer, self.schedule,
                                            epoch_seed(self.seed, epoch, "batches"), self.rt, bar, self.max_loss)
        self._share_batchnorm_statistics()
        return result

    def evaluate(self) -> dict:
        """{"val": {"loss", "acc"} or None, "test": {"loss", "acc"}}"""
        scores = {name: engine.evaluate(self.net, batches, self.rt) for name, batches in self.eval_batches.items()}
        return {"val": scores.get("val"), "test": scores["test"]}

    def predict(self, batches):
        """Predicted class of every image of a split, by this process alone (rank 0 under DDP)."""
        return engine.predict(self.model, batches, self.rt.alone())

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])

    def _share_batchnorm_statistics(self):
        """Under DDP, give every rank rank 0's BatchNorm statistics before evaluating."""
        if self.rt.world > 1:
            for buf in self.model.buffers():
                torch.distributed.broadcast(buf, 0)
