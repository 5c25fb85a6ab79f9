"""The README and the guides as a script: their shell commands in the order a reader meets them, run in one bash
session in a fresh clone, each command's exit status and output kept, and the outputs the docs quote checked.

A guide marks, in HTML comments a reader's browser does not show:
- a command the test does not run, and why: <!-- guide-test skips `PREFIX`: REASON --> (every command of that guide
  starting with PREFIX);
- a quoted output: <!-- guide-test: the block below is what `PREFIX` prints --> before a plain ``` block; each of
  its lines is a line the command printed (`...` alone elides lines; `...` in a line stands for any text; a
  trailing timing such as `13s [vm]` is ignored); "is all that `PREFIX` prints": and it printed no other line.

The clone is of the project as shipped, with its committed runs shrunk to seconds by the command the README's
"Tests" section shows (committed before the clone is made), so that the whole path fits CI's budget."""

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# In the order a reader meets them: the README, then its "Going further" table.
GUIDES = ["README.md", "docs/experiments.md", "docs/comparing.md", "docs/statistics.md", "docs/sequential.md",
          "docs/datasets.md", "docs/models.md", "docs/gpu.md", "docs/sweep.md", "docs/reference.md",
          "docs/reliability.md", "docs/reproducibility.md", "docs/design.md"]

SKIP = re.compile(r"<!-- guide-test skips `(.+?)`: (.+?) -->", re.S)
QUOTE = re.compile(r"<!-- guide-test: the block below is (what|all that) `(.+?)` prints -->")
SHRINK = re.compile(r"shrunk to seconds a run by `(python -m thesislab\.sweep [^`]+)`")


@dataclass
class Command:
    guide: str
    line: int  # where it starts in the guide, from 1
    text: str  # as typed, continuation lines and comments included
    skip: str = ""  # the doc's reason for not running it here
    quoted: list = field(default_factory=list)  # lines the doc says it prints
    quoted_all: bool = False  # and nothing else

    @property
    def where(self):
        return f"{self.guide}:{self.line}"


def shell_commands(block, first_line):
    """(line, text) of each command of a ```bash block: continuation lines joined, comment-only lines dropped."""
    lines, pending, start = block.splitlines(), [], None
    for i, line in enumerate(lines):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        start = first_line + i if not pending else start
        pending.append(line)
        if not line.rstrip().endswith("\\"):
            yield start, "\n".join(pending)
            pending = []


def commands_of(guide):
    """Every shell command of one guide, with its marks; refuses a mark that names no command."""
    text = (ROOT / guide).read_text()
    found, skips, quote_for, quote_all = [], {}, None, False
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = line.strip()
        if fence.startswith("```"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            body = "\n".join(lines[i + 1:end])
            if fence == "```bash":
                found += [Command(guide, n, t) for n, t in shell_commands(body, i + 2)]
            elif quote_for is not None:
                quoted = [c for c in found if c.text.startswith(quote_for)]
                if not quoted:
                    raise ValueError(f"{guide}:{i}: the quote is of `{quote_for}`, which no command above starts with")
                quoted[-1].quoted = [q for q in body.splitlines() if q.strip()]
                quoted[-1].quoted_all = quote_all
            quote_for = None
            i = end + 1
            continue
        if m := QUOTE.search(line):
            quote_all, quote_for = m.group(1) == "all that", m.group(2)
        i += 1
    for m in SKIP.finditer(text):
        skips[m.group(1)] = " ".join(m.group(2).split())
    for prefix, why in skips.items():
        marked = [c for c in found if c.text.startswith(prefix)]
        if not marked:
            raise ValueError(f"{guide}: the guide-test mark skips `{prefix}`, which no command starts with")
        for c in marked:
            c.skip = why
    return found


def all_commands():
    return [c for guide in GUIDES for c in commands_of(guide)]


def shrink_command():
    """The command the README's "Tests" section shows, which shrinks the committed runs for this test."""
    text = " ".join((ROOT / "README.md").read_text().split())
    m = SHRINK.search(text)
    if not m:
        raise ValueError("README.md's Tests section no longer shows the command that shrinks the guides' runs")
    return m.group(1)


def normal(line):
    """A printed line without what differs from machine to machine: seconds taken, the node's name."""
    return re.sub(r"\s+\d+(\.\d+)?s(\s+\[[^\]]*\])?$", "", " ".join(line.split()))


def unlike_the_quote(command, printed):
    """What differs from the doc's quote: each quoted line no printed line matches (`...` in a quoted line: any
    text), and for a quote of all it prints, each printed line the quote has not."""
    out = [normal(p) for p in printed if p.strip()]
    wanted = [normal(q) for q in command.quoted if q.strip() != "..."]
    patterns = [re.compile(".*?".join(map(re.escape, q.split("...")))) for q in wanted]
    missing = [f"missing: {q}" for q, p in zip(wanted, patterns) if not any(p.fullmatch(o) for o in out)]
    extra = [f"not quoted: {o}" for o in out if not any(p.fullmatch(o) for p in patterns)]
    return missing + (extra if command.quoted_all else [])


# --- the fresh clone ---------------------------------------------------------------------------------------------

def link_venv(project, venv):
    """The project's .venv as the set-up made it (CI's own fresh clone ran the README's set-up): a folder of links
    to it, with its own stamp, so that `make` finds the set-up done and never installs into the linked one."""
    mine = project / ".venv"
    mine.mkdir()
    for entry in venv.iterdir():
        if entry.name != ".installed":
            (mine / entry.name).symlink_to(entry.resolve() if not entry.is_symlink() else os.readlink(entry))
    (mine / ".installed").touch()


def reader_env(home, venv):
    """A new shell's environment: no virtualenv active, a git identity (DVC needs one to save experiments)."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != venv / "bin"]
    env = {"PATH": os.pathsep.join(path), "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb",
           "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "GIT_CONFIG_NOSYSTEM": "1"}
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    (home / ".gitconfig").write_text("[user]\n\tname = A Reader\n\temail = reader@example.com\n")
    return env


def run(cmd, cwd, env, timeout=1800):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{done.stdout[-3000:]}"
                             f"\n{done.stderr[-3000:]}")
    return done.stdout


def shipped_and_shrunk(dest, env, venv):
    """A clone of the project as last committed, its runs made again at the README's shrunk params and committed:
    the project a reader clones, seconds a run."""
    run(["git", "clone", "-q", str(ROOT), str(dest)], dest.parent, env)
    link_venv(dest, venv)
    shell = f"source .venv/bin/activate && {shrink_command()} && git add -A && git commit -qm 'shrunk runs'"
    run(["bash", "-c", shell], dest, env)
    return dest


# --- running them ------------------------------------------------------------------------------------------------

def script(commands):
    """One bash session: each command as typed between markers carrying its index and exit status (on lines of
    their own, whether or not the command ended its last line); the first that fails ends the session."""
    parts = ["exec 2>&1"]
    for i, c in enumerate(commands):
        if not c.skip:
            parts.append(f"printf '\\n@@start {i}\\n'\n{c.text}\n"
                         f"rc=$?; printf '\\n@@end {i} %d\\n' $rc; [ $rc -eq 0 ] || exit 97")
    return "\n".join(parts) + "\n"


@dataclass
class Outcome:
    command: Command
    rc: int
    output: list
    seconds: float


def run_guides(commands, clone, env, timeout):
    """Each command's outcome, in order, up to the first that fails."""
    outcomes, buffer, started = [], [], {}
    with subprocess.Popen(["bash", "-c", script(commands)], cwd=clone, env=env, stdout=subprocess.PIPE,
                          text=True) as proc:
        killed = []
        guard = threading.Timer(timeout, lambda: (killed.append(True), proc.kill()))  # a hang guard, far above
        # the expected time
        guard.start()
        for line in proc.stdout:
            line = line.rstrip("\n")
            mark = line.split()
            if line.startswith("@@start "):
                started[int(mark[1])], buffer = time.monotonic(), []
            elif line.startswith("@@end "):
                i, rc = int(mark[1]), int(mark[2])
                outcomes.append(Outcome(commands[i], rc, buffer, time.monotonic() - started[i]))
                buffer = []
            elif line.strip():
                buffer.append(line)
        guard.cancel()
    if killed:
        raise AssertionError(f"the guides ran over {timeout} s; the last lines:\n" + "\n".join(buffer[-40:]))
    return outcomes
