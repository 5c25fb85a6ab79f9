"""(schedule, seed) runs, start to finish: the train stage's one call. A run alone is a pack of one; a pack is
several runs of one configuration trained as one computation (array.py), each exactly as alone.

Check the names the runs need, choose the device, assemble each run (resuming an interrupted one), train them until
each one's stop rule fires, then write each one's model and folder as it stops, and drop its working folder
(checkpoint and scratch log).
"""

import contextlib
import fcntl
import shutil
import sys
from dataclasses import dataclass

import torch

from thesislab import config, files, io
from thesislab.errors import UserError
from thesislab.train import array, assemble, checkpoint, models, runtime, schedules
from thesislab.train.log import EpochLog, LiveLog, write_run
from thesislab.train.loop import StopRules, fit
from thesislab.train.trainer import Pack


def check(cfg, schedule, seed):
    """Refuse names and numbers the registries or the seed range do not allow, before anything is read or
    written (the train stage calls this before relaunching under torchrun, too)."""
    models.check_name(cfg.model)
    schedules.check_names([schedule])
    if not 0 <= seed <= config.SEED_MAX:
        raise UserError(f"--seed: must be an integer in [0, {config.SEED_MAX}] (got {seed})")


def train(cfg, schedule, seed, paths: assemble.RunPaths, progress=True) -> dict:
    """One run: a pack of one."""
    return train_pack(cfg, [(schedule, seed, paths)], progress=progress)[0]


def train_pack(cfg, runs, width=None, progress=True) -> list:
    """Runs [(schedule, seed, RunPaths)] of one configuration (one params.yaml, one data set), trained as one
    computation (array.py); each writes exactly the files it writes alone. Returns each run's summary, in order.
    width: the pack's slots (idle ones train copies that are thrown away): the sweep pads a CUDA pack to a fixed
    width, which runtime.computation records there; on the CPU a run's bytes do not depend on it."""
    for schedule, seed, _ in runs:
        check(cfg, schedule, seed)
    _check_one_configuration(runs)
    rt = runtime.setup(cfg.engine)
    width = max(width or 1, len(runs))
    if width > 1 and (why := array.why_alone(cfg, rt.world)):
        raise UserError(f"these runs cannot share a pack: {why}; train them one at a time")
    summaries = {}  # each run's, as it finishes
    try:
        with contextlib.ExitStack() as locks:
            for schedule, seed, paths in runs:
                locks.enter_context(_only_trainer(paths.work, files.run_name(schedule, seed), rt.main))
            _train(cfg, runs, width, rt, progress and rt.main, summaries)
    except torch.OutOfMemoryError:
        left = [r for r in runs if files.run_name(*r[:2]) not in summaries]
        if len(left) < 2:
            raise UserError("out of GPU memory with one run alone: lower batch_size or engine.eval_batch_size") from None
        half = len(left) // 2
        print(f"pack of {len(left)} runs: out of GPU memory; split into packs of {half} and {len(left) - half}, each "
              "run going on from its last checkpoint", flush=True)
        torch.cuda.empty_cache()
        for part in (left[:half], left[half:]):
            for summary, (schedule, seed, _) in zip(train_pack(cfg, part, _narrower(width, len(part)), progress), part):
                summaries[files.run_name(schedule, seed)] = summary
    finally:
        runtime.teardown(rt)
    return [summaries[files.run_name(schedule, seed)] for schedule, seed, _ in runs]


def _narrower(width, runs):
    """A split pack's width: half the slots, at least its runs."""
    return max(runs, (width + 1) // 2) if width else None


def _check_one_configuration(runs):
    """A pack shares its data: every run must read the same path lists, stats, images and weights folder."""
    shared = ("root", "pathlist", "stats", "cache", "weights")
    first = runs[0][2]
    for schedule, seed, paths in runs[1:]:
        differ = [f for f in shared if getattr(paths, f) != getattr(first, f)]
        if differ:
            raise UserError(f"train@{files.run_name(schedule, seed)}: its --{differ[0]} differs from "
                            f"train@{files.run_name(*runs[0][:2])}'s: runs of a pack share their data")
    names = [files.run_name(s, n) for s, n, _ in runs]
    if len(set(names)) < len(names):
        raise UserError(f"train@{next(n for n in names if names.count(n) > 1)} is twice in one pack")


@contextlib.contextmanager
def _only_trainer(work, name, main):
    """One process trains a run at a time: a second (a sweep's retry while a lost task still runs, a `dvc repro`
    beside a sweep) would write the same checkpoint, model and folder. The lock is the working folder's."""
    if not main:  # under DDP the first process holds it for all
        yield
        return
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"train@{name} is already training in another process (its working folder {work} is "
                            "locked); wait for it or stop it") from None
        yield


@dataclass
class Record:
    """What a run's checkpoint and metrics.json say it was made from."""

    digest: str
    fingerprint: str
    origin: dict
    knobs: dict


def _train(cfg, runs, width, rt, progress, summaries):
    say = print if rt.main else (lambda *a, **k: None)
    names = [files.run_name(schedule, seed) for schedule, seed, _ in runs]
    where = runtime.describe(rt) + (f", {len(runs)} runs as one computation" if len(runs) > 1 else "")
    for name in names:
        say(f"train@{name}: {cfg.model} on {where}")
    first = runs[0][2]
    images = assemble.load_images(first, image_size=cfg.image_size, normalize=cfg.normalize, device=rt.device,
                                  resident=cfg.engine.resident, progress=progress, say=say)
    test = assemble.test_batches(images, cfg, rt)  # one test set: its batches made once for every run
    members = [assemble.build_member(cfg, schedule, seed, images, rt, paths, test, say) for schedule, seed, paths in runs]
    pack = Pack(members, cfg, rt, assemble.make_optimizer, assemble.wrap, width)
    computation = runtime.computation(rt, cfg.engine, width)
    digest = checkpoint.config_digest(cfg, computation, assemble.data_files(first, cfg.weights))
    records = {}
    for m in members:
        knobs = checkpoint.schedule_knobs(cfg, m.schedule_name)
        fingerprint = checkpoint.fingerprint(digest, m.schedule_name, m.seed, knobs)
        records[m.name] = Record(digest, fingerprint, checkpoint.origin(digest, computation, knobs), knobs)
        rows = assemble.resume(m, m.paths.checkpoint, fingerprint, say, records[m.name].origin)
        m.log = LiveLog(m.paths.log, m.paths.live, m.name, rows) if rt.main else EpochLog(rows)  # DDP: rank 0 logs

    def save_checkpoint(m, epoch):
        if rt.main:
            r = records[m.name]
            checkpoint.save(m.paths.checkpoint, {"fingerprint": r.fingerprint, "origin": r.origin, "epoch": epoch,
                                                 "log": m.log.rows, **m.state_dict()})

    def finish(m, stop_reason):
        r = records[m.name]
        summary = m.log.summary(stop_reason, schedule=m.schedule_name, seed=m.seed, model=cfg.model,
                                device=runtime.describe(rt), config=r.digest, computation=computation,
                                schedule_params=r.knobs,
                                test_set=files.test_set_digest(m.paths.pathlist, m.paths.root))
        if rt.main:
            m.log.finish(summary)
            _write_outputs(cfg, m, pack)
            m.log.retire()
            shutil.rmtree(m.paths.work, ignore_errors=True)  # the checkpoint could only resume this finished run
            _say_summary(m.name, summary, say)
        summaries[m.name] = summary

    rules = StopRules(cfg.epochs, cfg.loss_stop, cfg.monitor, cfg.checkpoint_every)
    fit(pack, rules, save_checkpoint, finish, say, progress)


def _write_outputs(cfg, member, pack):
    data, paths = member.data, member.paths
    predictions = pack.predict(member, member.eval_batches["test"])
    with io.together():  # the model and the run's folder are replaced together: never one run's beside another's
        checkpoint.save_model(paths.model, member.model, name=cfg.model, classes=data.classes,
                              image_size=cfg.image_size, dropout=cfg.dropout, normalization=data.normalization)
        write_run(paths.run, paths.log, data.test.labels.cpu().tolist(), predictions.tolist(), data.classes)


def _say_summary(name, s, say):
    def pct(v):
        return "undefined" if v is None else f"{v:.2f}%"

    # The line's start (files.FINISHED) says the run's outputs are written: a pack's worker marks it done by it.
    say(f"{files.FINISHED.format(name=name)} {s['stop_reason']} after {s['epochs']} epochs: test {pct(s['test_acc'])} "
        f"(best {pct(s['best_test_acc'])}), {s['lr_reductions']} LR reductions, {s['train_seconds']}s, "
        f"{s['images_per_second']:,.0f} images/s")
    if s["stop_reason"] == "diverged":
        print(f"warning: train@{name} diverged (the loss became NaN, infinite or over "
              f"{assemble.DIVERGED_LOSS_FACTOR}x that of guessing); metrics and plots are written, exit status 0; "
              "try a smaller lr", file=sys.stderr)
