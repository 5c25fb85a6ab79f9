"""Stage compare: the runs of the current schedules and seeds -> comparison.json, its headline, curves, figures,
a table.

It reads exactly the runs that params.yaml's `schedules` x `seeds` name, so a folder left by an earlier
experiment with other seeds or schedules never enters the comparison or the figures.
"""

import argparse
import contextlib
from pathlib import Path

from thesislab import config, files, io
from thesislab.comparison import curves, designs, figures, looks, report
from thesislab.comparison.compare import Settings, check_runs, compare, run_numbers, with_design, with_history
from thesislab.errors import UserError, stage_main


def load_runs(runs_dir, schedules, seeds):
    """{schedule: [files.Run per seed]}, checked to be the runs asked for and of one configuration."""
    runs = {s: [files.read_run(runs_dir, files.run_name(s, seed)) for seed in seeds] for s in schedules}
    check_runs(runs, seeds, runs_dir)
    return runs


def differences(arms, cfg) -> dict:
    """{challenger: {seed: its test accuracy - the baseline's}}, the paired differences a design looks at."""
    base = arms[cfg.compare.baseline]
    for name, arm in arms.items():
        lost = [seed for seed in cfg.seeds if arm[seed]["test_acc"] is None]
        if lost:
            raise UserError(f"train@{name}-{lost[0]}: no test accuracy (its run diverged to NaN), and a sequential "
                            "design needs every seed's: set a smaller lr and start a new design")
    return {c: {seed: arm[seed]["test_acc"] - base[seed]["test_acc"] for seed in cfg.seeds}
            for c, arm in arms.items() if c != cfg.compare.baseline}


@stage_main
def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", required=True, help="folder of the runs, one subfolder per (schedule, seed)")
    ap.add_argument("--out", required=True, help="comparison.json to write: the whole comparison")
    ap.add_argument("--headline", required=True, help="headline.json to write: what `dvc exp show` lists")
    ap.add_argument("--plots", required=True, help="folder for the figures and comparison.md")
    ap.add_argument("--curves", required=True, help="folder for the mean curves (CSV, for dvc plots)")
    args = ap.parse_args()
    cfg = config.load()
    settings = Settings(cfg.compare.baseline, cfg.compare.min_effect, cfg.compare.target_acc, cfg.monitor, cfg.epochs)
    runs = load_runs(args.runs, cfg.schedules, cfg.seeds)
    arms = {s: {run.summary["seed"]: run_numbers(run, settings) for run in per_seed} for s, per_seed in runs.items()}
    sequential = cfg.compare.sequential.max_seeds is not None
    # A design's look is decided and written while no other comparison of the project decides one (designs.py).
    with designs.one_look_at_a_time() if sequential else contextlib.nullcontext():
        previous = looks.read(args.out, strict=sequential)  # the looks of a sequential design, the seeds compared before
        key = looks.runs_key(runs)
        result = with_history(compare(arms, settings), *looks.history(previous, key, cfg.seeds))
        if sequential:
            record, note = looks.advance(previous, cfg, runs, differences(arms, cfg),
                                         looks.compared_before(previous, key), designs.elsewhere(args.out))
            if note:
                print(f"note: {note}")
            result = with_design(result, record, arms)
        elif isinstance(previous.get("sequential"), dict):
            result["sequential"] = previous["sequential"]  # kept: turning the design off and on again resumes it
        write(args, cfg, runs, arms, result)
    print(f"verdict: {result['verdict']}")


def write(args, cfg, runs, arms, result):
    """The comparison, its headline, curves, figures and table, together or not at all."""
    data = f"{cfg.dataset} ({Path(cfg.source).name})" if cfg.dataset == "folder" else cfg.dataset
    title = (f"{cfg.model} on {data}: " + " vs ".join(cfg.schedules) +
             f", {len(cfg.seeds)} seed{'s' if len(cfg.seeds) > 1 else ''} (lr {cfg.lr:g}, batch {cfg.batch_size})")
    best = max(result["mean_test_acc"], key=lambda a: result["mean_test_acc"][a] or -1)
    final = {s: {seed: numbers["test_acc"] for seed, numbers in arm.items()} for s, arm in arms.items()}
    with io.together():  # the comparison, its curves, figures and table change together or not at all
        io.write_json(args.out, result)
        io.write_json(args.headline, report.headline(result))
        curves.write_csvs(args.curves, runs)
        figures.draw_all(runs, final, best, args.plots, title, result)
        io.write_text(f"{args.plots}/comparison.md", report.markdown(result, title, cfg.dataset))


if __name__ == "__main__":
    main()
