"""One (schedule, seed) run, start to finish: the train stage's one call.

Check the names the run needs, choose the device, assemble the run (resuming an interrupted one), train it
until a stop rule fires, then write the model and the run's folder, and drop its working folder (checkpoint and scratch log).
"""

import contextlib
import fcntl
import shutil
import sys

from thesislab import config, files, io
from thesislab.errors import UserError
from thesislab.train import assemble, checkpoint, models, runtime, schedules
from thesislab.train.log import EpochLog, LiveLog, write_run
from thesislab.train.loop import StopRules, fit


def check(cfg, schedule, seed):
    """Refuse names and numbers the registries or the seed range do not allow, before anything is read or
    written (the train stage calls this before relaunching under torchrun, too)."""
    models.check_name(cfg.model)
    schedules.check_names([schedule])
    if not 0 <= seed <= config.SEED_MAX:
        raise UserError(f"--seed: must be an integer in [0, {config.SEED_MAX}] (got {seed})")


def train(cfg, schedule, seed, paths: assemble.RunPaths, progress=True) -> dict:
    check(cfg, schedule, seed)
    rt = runtime.setup(cfg.engine)
    try:
        with _only_trainer(paths.work, files.run_name(schedule, seed), rt.main):
            return _train(cfg, schedule, seed, paths, rt, progress and rt.main)
    finally:
        runtime.teardown(rt)


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


def _train(cfg, schedule, seed, paths, rt, progress):
    say = print if rt.main else (lambda *a, **k: None)
    name = files.run_name(schedule, seed)
    say(f"train@{name}: {cfg.model} on {runtime.describe(rt)}")
    data = assemble.load_data(paths, image_size=cfg.image_size, normalize=cfg.normalize, monitor=cfg.monitor,
                              val_fraction=cfg.val_fraction, seed=seed, device=rt.device,
                              resident=cfg.engine.resident, progress=progress, say=say)
    trainer = assemble.build_trainer(cfg, schedule, seed, data, rt, paths.weights, say)
    computation = runtime.computation(rt, cfg.engine)
    digest = checkpoint.config_digest(cfg, computation, assemble.data_files(paths, cfg.weights))
    knobs = checkpoint.schedule_knobs(cfg, schedule)
    fingerprint = checkpoint.fingerprint(digest, schedule, seed, knobs)
    origin = checkpoint.origin(digest, computation, knobs)
    rows = assemble.resume(trainer, paths.checkpoint, fingerprint, say, origin)
    log = LiveLog(paths.log, paths.live, name, rows) if rt.main else EpochLog(rows)  # under DDP only rank 0 logs

    def save_checkpoint(epoch, rows):
        if rt.main:
            checkpoint.save(paths.checkpoint, {"fingerprint": fingerprint, "origin": origin, "epoch": epoch, "log": rows,
                                               **trainer.state_dict()})

    rules = StopRules(cfg.epochs, cfg.loss_stop, cfg.monitor, cfg.checkpoint_every)
    stop_reason = fit(trainer, log, rules, save_checkpoint, say, name, progress)
    summary = log.summary(stop_reason, schedule=schedule, seed=seed, model=cfg.model, device=runtime.describe(rt),
                          config=digest, computation=computation, schedule_params=knobs,
                          test_set=files.test_set_digest(paths.pathlist, paths.root))
    if rt.main:
        log.finish(summary)
        _write_outputs(cfg, data, trainer, paths)
        log.retire()
        shutil.rmtree(paths.work, ignore_errors=True)  # the checkpoint could only resume this finished run
        _say_summary(name, summary, say)
    return summary


def _write_outputs(cfg, data, trainer, paths):
    test = assemble.batches(data, data.test, assemble.eval_batch_size(cfg), trainer.rt, shard=False)
    predictions = trainer.predict(test)
    with io.together():  # the model and the run's folder are replaced together: never one run's beside another's
        checkpoint.save_model(paths.model, trainer.model, name=cfg.model, classes=data.classes,
                              image_size=cfg.image_size, dropout=cfg.dropout, normalization=data.normalization)
        write_run(paths.run, paths.log, data.test.labels.cpu().tolist(), predictions.tolist(), data.classes)


def _say_summary(name, s, say):
    def pct(v):
        return "undefined" if v is None else f"{v:.2f}%"

    say(f"train@{name}: stopped by {s['stop_reason']} after {s['epochs']} epochs: test {pct(s['test_acc'])} "
        f"(best {pct(s['best_test_acc'])}), {s['lr_reductions']} LR reductions, {s['train_seconds']}s, "
        f"{s['images_per_second']:,.0f} images/s")
    if s["stop_reason"] == "diverged":
        print(f"warning: train@{name} diverged (the loss became NaN, infinite or over "
              f"{assemble.DIVERGED_LOSS_FACTOR}x that of guessing); metrics and plots are written, exit status 0; "
              "try a smaller lr", file=sys.stderr)
