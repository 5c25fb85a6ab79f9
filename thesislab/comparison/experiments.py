"""Comparing two experiments (or commits, branches, or the workspace) with the statistics the compare stage uses.

`dvc metrics diff exp-a exp-b` says how the numbers moved; this says whether the move is real. For each schedule
both experiments ran, the second experiment's runs are paired with the first's by seed, and the same
comparison.json layout is written, one per schedule. p-values are Holm-adjusted across those schedules.

Each experiment's runs are read from git (the run folders are kept in git), at the revision a name resolves to:
a DVC experiment name, a commit, branch or tag, or `workspace` for the files on disk.
"""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from thesislab import config, files
from thesislab.comparison import compare as cmp
from thesislab.comparison import statistics
from thesislab.errors import UserError

WORKSPACE = "workspace"


class Revision:
    """Files of the project as of one experiment, commit or the workspace."""

    def __init__(self, name, root="."):
        self.name, self.root = name, Path(root)
        self.sha = None if name == WORKSPACE else resolve(name, self.root)

    def read(self, path) -> str:
        """The file's text; FileNotFoundError if it has none there."""
        if self.sha is None:
            return (self.root / path).read_text()
        out = subprocess.run(["git", "show", f"{self.sha}:{path}"], cwd=self.root, capture_output=True, text=True)
        if out.returncode != 0:
            raise FileNotFoundError(path)
        return out.stdout

    def must_read(self, path) -> str:
        try:
            return self.read(path)
        except FileNotFoundError:
            where = "in the workspace" if self.sha is None else f"at {self.sha[:7]}"
            raise UserError(f"{self.name}: no {path} {where} (has its pipeline run?)") from None


def resolve(name, root) -> str:
    """The commit of a DVC experiment name, or of any git revision."""
    git = ["git", "-C", str(root)]
    out = subprocess.run([*git, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"], capture_output=True,
                         text=True)
    if out.returncode == 0:
        return out.stdout.strip()
    refs = subprocess.run([*git, "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"],
                          capture_output=True, text=True).stdout.split("\n")
    found = {sha for sha, _, ref in (line.partition(" ") for line in refs if line) if ref.rsplit("/", 1)[-1] == name}
    if len(found) == 1:
        return found.pop()
    if found:
        raise UserError(f"{name}: names {len(found)} experiments; use a commit instead (dvc exp show --sha)")
    raise UserError(f"{name}: no such experiment, commit or branch (dvc exp show lists experiments)")


def runs_folder(rev: Revision) -> str:
    """Where the compare stage reads runs from, as dvc.yaml says (a path is written once, there)."""
    try:
        cmd = yaml.safe_load(rev.must_read("dvc.yaml"))["stages"]["compare"]["cmd"]
        args = shlex.split(cmd)
        return args[args.index("--runs") + 1]
    except (KeyError, ValueError, IndexError, TypeError):
        raise UserError(f"{rev.name}: dvc.yaml has no compare stage with --runs") from None


def _params(rev):
    return config.from_dict(yaml.load(rev.must_read("params.yaml"), Loader=config.Yaml12Loader))


def load(rev: Revision, cfg, settings):
    """{schedule: {seed: run numbers}} of one experiment, its runs checked as the compare stage checks them."""
    folder = runs_folder(rev)
    arms = {}
    for schedule in cfg.schedules:
        runs = []
        for seed in cfg.seeds:
            name = files.run_name(schedule, seed)
            summary = json.loads(rev.must_read(f"{folder}/{name}/{files.METRICS}"))
            rows = files.read_epochs(None, read_text=lambda rel, run=name: rev.read(f"{folder}/{run}/{rel}"))
            runs.append(files.Run(name, rows, summary, Path(folder) / name))
        cmp.check_runs({schedule: runs}, cfg.seeds, f"{rev.name}: {folder}")
        arms[schedule] = {seed: cmp.run_numbers(run, settings) for seed, run in zip(cfg.seeds, runs)}
    return arms


def test_set(rev, cfg) -> tuple:
    """(dataset, the test labels in path-list order, the test-set digest) as the experiment's first run saw
    them (its predictions.csv and metrics.json)."""
    name = files.run_name(cfg.schedules[0], cfg.seeds[0])
    folder = f"{runs_folder(rev)}/{name}"
    text = rev.must_read(f"{folder}/{files.PREDICTIONS}")
    actual = tuple(line.split(",", 1)[0] for line in text.splitlines()[1:] if line)
    try:
        digest = json.loads(rev.must_read(f"{folder}/{files.METRICS}")).get("test_set")
    except (ValueError, AttributeError):
        digest = None
    return cfg.dataset, actual, digest


def computation(rev, cfg) -> dict:
    """How the experiment's runs computed (its first run's record: the compare stage holds all of its runs to one)."""
    name = files.run_name(cfg.schedules[0], cfg.seeds[0])
    try:
        value = json.loads(rev.must_read(f"{runs_folder(rev)}/{name}/{files.METRICS}")).get("computation")
    except (ValueError, AttributeError):
        return {}
    return value if isinstance(value, dict) else {}


def computation_difference(rev_a, cfg_a, rev_b, cfg_b) -> dict:
    """{key: [a's, b's]} where the two experiments computed differently (portable against native arithmetic,
    another torch, threads, device): their difference is then partly the arithmetic's, which the user must know."""
    a, b = computation(rev_a, cfg_a), computation(rev_b, cfg_b)
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)} if a and b else {}


def _same_test_set(rev_a, cfg_a, rev_b, cfg_b):
    """A paired difference means something only on one test set: refuse two (other images with the same labels,
    from another generator seed or folder, differ in the digest)."""
    (data_a, labels_a, digest_a), (data_b, labels_b, digest_b) = test_set(rev_a, cfg_a), test_set(rev_b, cfg_b)
    if (data_a, labels_a) != (data_b, labels_b) or (digest_a and digest_b and digest_a != digest_b):
        def what(data, labels):
            return f"{data}, {len(set(labels))} classes, {len(labels)} test images"

        differ = (f"{what(data_a, labels_a)} vs {what(data_b, labels_b)}" if (data_a, labels_a) != (data_b, labels_b)
                  else f"the same labels, other images: test sets {digest_a} vs {digest_b}")
        raise UserError(f"{rev_a.name} and {rev_b.name} were tested on different test sets ({differ}); "
                        "--different-data compares them anyway")


def _warn_if_stale(rev):
    """The workspace's runs may predate its params.yaml (edited, or -S applied, since they trained)."""
    if rev.sha is not None:
        return
    out = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=rev.root, capture_output=True,
                         text=True)
    try:
        stale = [s for s in json.loads(out.stdout or "{}") if s.startswith("train@")]
    except ValueError:
        return
    if stale:
        print(f"warning: workspace: its params differ from what its runs were trained with ({', '.join(stale[:3])}"
              f"{', ...' if len(stale) > 3 else ''} are stale; `dvc repro` brings them up to date)", file=sys.stderr)


def shared_settings(name_a, cfg_a, cfg_b) -> cmp.Settings:
    """One definition of every compared quantity for both experiments: the first one's target accuracy and
    min_effect; epochs to the target on the split both monitored (test, the one split both have, when their
    monitors differ); a run that never reaches it counted as the longer experiment's max epochs + 1."""
    monitor = cfg_a.monitor if cfg_a.monitor == cfg_b.monitor else "test"
    return cmp.Settings(name_a, cfg_a.compare.min_effect, cfg_a.compare.target_acc, monitor,
                        max(cfg_a.epochs, cfg_b.epochs), arms_are_schedules=False)


def compare_experiments(name_a, name_b, root=".", different_data=False) -> dict:
    """{schedule: comparison of experiment b against experiment a, paired by seed}."""
    if name_a == name_b:
        raise UserError(f"{name_a} is both the baseline and the challenger: nothing to compare")
    rev_a, rev_b = Revision(name_a, root), Revision(name_b, root)
    cfg_a, cfg_b = _params(rev_a), _params(rev_b)
    for rev in (rev_a, rev_b):
        _warn_if_stale(rev)
    if not different_data:
        _same_test_set(rev_a, cfg_a, rev_b, cfg_b)
    settings = shared_settings(name_a, cfg_a, cfg_b)
    arms_a, arms_b = load(rev_a, cfg_a, settings), load(rev_b, cfg_b, settings)
    shared = [s for s in arms_a if s in arms_b]
    if not shared:
        raise UserError(f"{name_a} and {name_b} ran no schedule in common")
    results = {}
    arithmetic = computation_difference(rev_a, cfg_a, rev_b, cfg_b)
    for schedule in shared:
        if not set(arms_a[schedule]) & set(arms_b[schedule]):
            raise UserError(f"{name_a} and {name_b} share no seed for {schedule} (seeds {sorted(arms_a[schedule])} "
                            f"vs {sorted(arms_b[schedule])}): nothing to pair")
        results[schedule] = cmp.compare({name_a: arms_a[schedule], name_b: arms_b[schedule]}, settings)
        if arithmetic:
            results[schedule]["computation_differs"] = arithmetic
    _holm_across(results, name_b, {s: {name_a: arms_a[s], name_b: arms_b[s]} for s in shared}, settings)
    return results


def _holm_across(results, challenger, arms_by_schedule, settings):
    """Several schedules are several questions: adjust their p-values together, and word the verdicts so."""
    if len(results) < 2:
        return
    schedules = list(results)
    adjusted = statistics.holm([results[s]["paired"][challenger]["test_acc"]["p_value"] for s in schedules])
    for s, p in zip(schedules, adjusted):
        pair = results[s]["paired"][challenger]
        pair["test_acc"]["p_holm"] = p
        pair["verdict_code"], pair["verdict"] = cmp.verdict(challenger, settings.baseline, pair, arms_by_schedule[s],
                                                            settings, holm=True)
        results[s]["verdict"] = pair["verdict"]
        results[s]["difference"][challenger].update(verdict_code=pair["verdict_code"], p_value=p)
