"""A pack of runs and the three things an epoch does with them: train, evaluate, predict.

Each run (a Member) has its own moving parts: model, optimizer, LR schedule, batches, seed. A pack trains its runs
as one computation (array.py); a run alone is a pack of one, calling its own module. Every run of a pack has the
same number of batches an epoch (one data set, one batch size), so the pack steps them in lockstep; each is at its
own epoch (a resumed run may be ahead of the others) and draws its batches and dropout masks from (its seed, its
epoch). A run that stops leaves the pack: its slot is no longer trained or logged, and the others go on.
"""

import copy

import torch
from tqdm import tqdm

from thesislab.train import array, checkpoint, engine, schedules
from thesislab.train.batches import epoch_seed


class Member:
    """One run: its module (the plain net; in a pack its parameters are views into the pack's), optimizer, LR
    schedule, batches and seed."""

    def __init__(self, name, schedule_name, seed, model, data, train_batches, eval_batches, max_loss, paths=None):
        self.name, self.schedule_name, self.seed = name, schedule_name, seed
        self.model = model
        self.data, self.train_batches = data, train_batches
        self.eval_batches = eval_batches  # {"test": ..., "val": ... when a validation split is held out}
        self.max_loss = max_loss  # an epoch's mean loss above this is divergence
        self.paths = paths
        self.optimizer = self.schedule = None  # made by the pack, once the model's parameters are where they stay
        self.log = None

    @property
    def lr(self):
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self):
        """The run's state, its own tensors (not views into a pack's): what a checkpoint holds."""
        return checkpoint.owned({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                                 "schedule": self.schedule.state_dict()})

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])


class Pack:
    """Runs of one configuration trained as one computation. `width`: the pack's slots (CUDA pads a pack to a fixed
    width, so that its arithmetic does not depend on how many runs it has; idle slots train copies that are
    thrown away)."""

    def __init__(self, members, cfg, rt, make_optimizer, wrap, width=None):
        self.members, self.rt = list(members), rt
        self.width = max(width or len(members), len(members))
        if self.width == 1:
            self.net = array.Single(wrap(members[0].model, cfg, rt))
        else:
            idle = [copy.deepcopy(members[0].model) for _ in range(self.width - len(members))]
            self.net = array.Stacked([m.model for m in members] + idle, loop_rgb_convs=not rt.cuda)
        for i, m in enumerate(members):
            m.slot = i
            m.optimizer = make_optimizer(m.model, cfg, rt)
            m.schedule = schedules.make(m.schedule_name, m.optimizer, cfg, len(m.train_batches))

    def leave(self, member):
        """A run that stopped: its slot idles from now on."""
        self.members.remove(member)

    def train_epoch(self, epochs, desc="", progress=True) -> list:
        """Each run's next epoch (epochs: one per member, in order); per member: loss, acc, images, seconds,
        diverged."""
        members = self.members
        # Dropout masks and batch order come from (seed, epoch), so a resumed run repeats them exactly.
        self.net.seed_dropout(self._per_slot([epoch_seed(m.seed, e, "dropout") for m, e in zip(members, epochs)]),
                              self.rt.device)
        with tqdm(total=len(members[0].train_batches), desc=desc, unit="step", leave=False,
                  disable=None if progress else True) as bar:
            results, diverged = engine.train_one_epoch(
                self.net, members, [epoch_seed(m.seed, e, "batches") for m, e in zip(members, epochs)], self.width,
                self.rt, bar)
        for m, state in diverged.items():  # the state it stopped in: its slot trained on after it
            m.model.load_state_dict(state)
        self._share_batchnorm_statistics()
        return results

    def evaluate(self) -> list:
        """Per member: {"val": {"loss", "acc"} or None, "test": {"loss", "acc"}}."""
        scores = {}
        for split in ("val", "test"):
            batches = [m.eval_batches.get(split) for m in self.members]
            if batches[0] is None:
                continue
            scores[split] = engine.evaluate(self.net, batches, [m.slot for m in self.members], self.width, self.rt)
        return [{"val": scores["val"][i] if "val" in scores else None, "test": scores["test"][i]}
                for i in range(len(self.members))]

    def predict(self, member, batches):
        """Predicted class of every image of a split, by the run's own module, in this process alone (rank 0 under
        DDP): its parameters are the pack's current ones."""
        return engine.predict(member.model, batches, self.rt.alone())

    def _per_slot(self, values):
        """One value per slot: the members' in their slots, the first member's for idle ones."""
        out = [values[0]] * self.width
        for m, v in zip(self.members, values):
            out[m.slot] = v
        return out

    def _share_batchnorm_statistics(self):
        """Under DDP (one run), give every rank rank 0's BatchNorm statistics before evaluating."""
        if self.rt.world > 1:
            for buf in self.members[0].model.buffers():
                torch.distributed.broadcast(buf, 0)
