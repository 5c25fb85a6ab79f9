"""Every sequential design this project holds, wherever it lies: the project's workspace, the copies queued and
`--temp` experiments run in (while they run), and every branch, tag and DVC experiment of its git. A new design
may start only on seeds none of them has looked at (looks.py decides; this module only finds them).

Why so wide: a design's error rate holds only for a plan fixed before its seeds were seen. Two experiments that
each start a design on the same seeds (`dvc exp run --temp -S compare.sequential.alpha=0.1`, then 0.05) are two
plans over one set of results, whichever copy of the project each ran in. Tips of refs, not every commit of
history: deleting comparison.json and committing that is how a team forgets a design on purpose, in the open.
docs/reliability.md says what is covered and what is not.
"""

import contextlib
import fcntl
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from thesislab.comparison import looks
from thesislab.errors import UserError

EXPERIMENTS = Path(".dvc/tmp/exps")  # where DVC makes the copies queued and --temp experiments run in


@dataclass(frozen=True)
class Elsewhere:
    """A design recorded outside the comparison.json being checked."""

    where: str  # "experiment alpha-01", "branch main", ... (for the user)
    record: dict  # its comparison.json's "sequential" record
    forget: str = None  # how to forget it on purpose, where there is such a way


def check_file(cfg, path):
    """looks.check() against the comparison.json at `path` and every other design the project holds, read only when
    a design is on (else nothing to check, and a damaged file is no reason to stop). The check stage and the sweep
    call it before any work."""
    if cfg.compare.sequential.max_seeds is not None:
        looks.check(cfg, looks.read(path), elsewhere(path))


def project_root() -> Path:
    """The project the comparison belongs to. DVC sets DVC_ROOT for every stage: for a queued or --temp experiment
    it names the project the experiment was started from, not the throwaway copy it runs in."""
    root = os.environ.get("DVC_ROOT")
    if root and Path(root).is_dir():
        return Path(root)
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True).stdout.strip()
    return Path(top or ".")


def elsewhere(rel_path, here=".") -> list:
    """Every distinct design record in the project except the one at `here`/rel_path (the file being checked)."""
    root, mine = project_root(), (Path(here) / rel_path).resolve()
    found, keys = [], set()

    def add(where, text, forget=None):
        record = _record(text)
        key = None if record is None else json.dumps(record, sort_keys=True)
        if key is not None and key not in keys:
            keys.add(key)
            found.append(Elsewhere(where, record, forget))

    depth = len(Path(rel_path).parts)
    workspaces = [(root / rel_path, "the project's workspace", f"delete {rel_path} there, to forget it")]
    workspaces += [(p, f"the experiment running in {p.parents[depth - 1]}", None)
                   for p in sorted((root / EXPERIMENTS).glob(f"*/{rel_path}"))]
    for path, where, forget in workspaces:
        if path.resolve() != mine and path.is_file():
            with contextlib.suppress(OSError):
                add(where, path.read_text())
    refs = _refs(root, rel_path)
    for (_, where, forget), text in zip(refs, _git_files(root, [r for r, _, _ in refs], rel_path)):
        add(where, text, forget)
    return found


def _record(text):
    """The valid design record in a comparison.json's text, else None (a damaged file elsewhere is not this
    comparison's to refuse: only its own must be readable)."""
    try:
        data = json.loads(text) if text else None
        return looks.record_of(data) if isinstance(data, dict) else None
    except (ValueError, UserError, KeyError, TypeError, IndexError, AttributeError):
        return None


def _refs(root, rel_path) -> list:
    """(ref, what to call it, how to forget it) for HEAD and every branch, tag and experiment."""
    out = subprocess.run(["git", "-C", str(root), "for-each-ref", "--format=%(refname)"], capture_output=True,
                         text=True).stdout.split()
    refs = [("HEAD", "the last commit", f"git rm {rel_path} && git commit, to forget it")]
    for ref in out:
        parts = ref.split("/")
        if ref.startswith("refs/heads/"):
            refs.append((ref, f"branch {ref.removeprefix('refs/heads/')}", None))
        elif ref.startswith("refs/tags/"):
            refs.append((ref, f"tag {ref.removeprefix('refs/tags/')}", None))
        elif ref.startswith("refs/exps/") and len(parts) == 5:  # refs/exps/<2 hex>/<38 hex>/<name>
            refs.append((ref, f"experiment {parts[-1]}", f"dvc exp remove {parts[-1]}, to forget it"))
        elif ref.startswith("refs/exps/"):
            refs.append((ref, "an experiment in DVC's queue", "dvc queue remove --all, to forget it"))
    return refs


def _git_files(root, refs, rel_path) -> list:
    """The file's text at each ref (None where it has none), read by one git process."""
    asked = "".join(f"{ref}:{rel_path}\n" for ref in refs).encode()
    out = subprocess.run(["git", "-C", str(root), "cat-file", "--batch"], input=asked, capture_output=True).stdout
    texts, at = [], 0
    for _ in refs:
        end = out.find(b"\n", at)
        header = out[at:end].split() if end >= 0 else []
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            texts.append(out[end + 1:end + 1 + size].decode(errors="replace"))
            at = end + 1 + size + 1
        else:  # "<ref>:<path> missing", or no commit there
            texts.append(None)
            at = end + 1 if end >= 0 else len(out)
    return texts


LOCK = Path(".dvc/tmp/sequential.lock")


@contextlib.contextmanager
def one_look_at_a_time():
    """Held from reading every design to writing this comparison: two experiments comparing at once (a queue run
    with -j 2) each see the other's look, never neither."""
    path = project_root() / LOCK
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except OSError:  # no .dvc/tmp to lock (a copy of the pipeline outside a DVC project): nothing runs beside it
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
