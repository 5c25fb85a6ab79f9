"""python -m thesislab.show: every experiment's headline in a table that fits 100 columns.

    python -m thesislab.show              # the workspace, each commit's baseline and its experiments
    python -m thesislab.show --width 80

`dvc exp show` prints every param and metric, hundreds of columns wide; this reads its JSON (`dvc exp show
--json`) and keeps what a reader compares: the params that differ between the rows, the seeds, each schedule's
mean test accuracy, and the verdict (cut to fit, in full in each row's plots/comparison.md).
"""

import argparse
import json
import shutil
import subprocess
import sys

from thesislab.errors import UserError, stage_main

COMPARISON, PARAMS = "metrics/comparison.json", "params.yaml"


def rows(shown) -> list:
    """[(name, params, comparison)] per row of `dvc exp show --json`, baselines then their experiments."""
    out = []

    def add(entry, name):
        data = entry.get("data") or {}
        params = ((data.get("params") or {}).get(PARAMS) or {}).get("data") or {}
        comparison = ((data.get("metrics") or {}).get(COMPARISON) or {}).get("data") or {}
        out.append((name, _flat(params), comparison))

    for base in shown:
        rev = base.get("rev") or "?"
        add(base, base.get("name") or (rev if rev == "workspace" else rev[:7]))
        for exp in base.get("experiments") or []:
            for rev in exp.get("revs") or []:
                add(rev, exp.get("name") or rev.get("name") or (rev.get("rev") or "?")[:7])
    return out


def _flat(d, prefix=""):
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            flat.update(_flat(v, f"{prefix}{k}."))
        else:
            flat[prefix + k] = v
    return flat


def changed_params(table) -> list:
    """The params whose values differ between rows (seeds aside: its own column)."""
    keys = sorted({k for _, params, _ in table for k in params})
    return [k for k in keys if k != "seeds" and len({json.dumps(p.get(k)) for _, p, _ in table}) > 1]


VERDICT_ROOM = 30  # the verdict keeps at least this many characters; param columns go first when they do not fit
CELL = 18  # a longer param value is cut


def render(table, width=100) -> str:
    schedules = list(dict.fromkeys(s for _, _, c in table for s in (c.get("mean_test_acc") or {})))

    def column(title, cells):
        cells = [c if len(c) <= CELL else c[: CELL - 3] + "..." for c in cells]
        return [title, *cells], max(len(title), *(len(c) for c in cells))

    fixed = [column("experiment", [name for name, _, _ in table]),
             column("seeds", [_cell(c.get("seeds")) for _, _, c in table]),
             *(column(f"{s} %", [_cell((c.get("mean_test_acc") or {}).get(s), 2) for _, _, c in table])
               for s in schedules)]
    used = sum(w + 2 for _, w in fixed)
    shown, hidden = [], []
    for key in changed_params(table):
        col = column(key, [_cell(p.get(key)) for _, p, _ in table])
        if used + col[1] + 2 + VERDICT_ROOM <= width:
            shown.append(col)
            used += col[1] + 2
        else:
            hidden.append(key)
    columns = [fixed[0], *shown, *fixed[1:]]
    room = max(12, width - used)
    verdicts = ["verdict", *(c.get("verdict") or "-" for _, _, c in table)]
    lines = []
    for i, verdict in enumerate(verdicts):
        cells = [cells[i].ljust(w) for cells, w in columns]
        cut = verdict if len(verdict) <= room else verdict[: room - 3] + "..."
        lines.append("  ".join([*cells, cut]).rstrip())
    if hidden:
        lines.append(f"(also differ: {', '.join(hidden)}; `dvc exp show --only-changed` has them)"[:width])
    return "\n".join(lines)


def _cell(v, digits=None):
    if v is None:
        return "-"
    if digits is not None and isinstance(v, (int, float)):
        return f"{v:.{digits}f}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


@stage_main
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m thesislab.show", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=min(100, shutil.get_terminal_size((100, 20)).columns))
    args = ap.parse_args(argv)
    out = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        raise UserError(f"dvc exp show failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")
    print(render(rows(json.loads(out.stdout)), args.width))


if __name__ == "__main__":
    main()
