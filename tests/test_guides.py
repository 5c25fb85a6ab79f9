"""Every command the README and the guides show, checked against what the project accepts today: each option of a
project command (`python -m thesislab.*`, `python -m stages.*`, `python -m bench.*`) is one its --help lists, each
`-S key=...` (dvc exp run, the sweep) names a key of params.yaml, each `make` target exists. A renamed option or
param breaks the guide that types it, and this test says which line. (It reads the commands; it does not run them:
running the guides in order, in a fresh clone, is still to be built.)"""

import re
import shlex
import subprocess
import sys

import pytest
from conftest import ROOT, default_params

# In the order a reader meets them: the README, then its "Going further" table.
GUIDES = ["README.md", "docs/experiments.md", "docs/comparing.md", "docs/statistics.md", "docs/sequential.md",
          "docs/datasets.md", "docs/models.md", "docs/gpu.md", "docs/sweep.md", "docs/reference.md",
          "docs/reliability.md", "docs/reproducibility.md", "docs/design.md"]
PROJECT_MODULES = ("thesislab", "stages", "bench")


def shell_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def commands(block):
    """Each command of a shell block, as tokens: continuation lines joined, comments dropped, `a && b` split."""
    joined = block.replace("\\\n", " ")
    for line in joined.splitlines():
        tokens = shlex.split(line, comments=True)
        current = []
        for token in tokens + ["&&"]:
            if token in ("&&", "||", ";", "|"):
                if current:
                    yield current
                current = []
            else:
                current.append(token)


def documented():
    """(guide, line of the command, tokens) for every command of every guide."""
    for guide in GUIDES:
        for block in shell_blocks((ROOT / guide).read_text()):
            for tokens in commands(block):
                yield guide, shlex.join(tokens), tokens


def module_of(tokens):
    """The project module a command runs (python -m X, torchrun ... -m X), or None."""
    if "-m" in tokens:
        module = tokens[tokens.index("-m") + 1]
        if module.split(".")[0] in PROJECT_MODULES:
            return module
    return None


_HELP = {}


def help_of(module):
    if module not in _HELP:
        done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"python -m {module} --help failed: {done.stderr[-500:]}"
        _HELP[module] = done.stdout
    return _HELP[module]


def params_keys():
    def flat(d, prefix=""):
        for k, v in d.items():
            yield prefix + k
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
    return set(flat(default_params()))


def set_keys(tokens):
    """The keys of a command's -S key=value overrides."""
    return [tokens[i + 1].split("=", 1)[0].lstrip("+~") for i, t in enumerate(tokens[:-1])
            if t in ("-S", "--set-param")]


def test_the_guides_show_commands():
    found = list(documented())
    assert len(found) > 50  # the README and the guides hold dozens: a parser that found none would pass vacuously
    assert {g for g, _, _ in found} >= {"README.md", "docs/experiments.md", "docs/sweep.md", "docs/sequential.md"}


@pytest.mark.parametrize("guide", GUIDES)
def test_every_documented_option_and_param_exists(guide):
    keys, targets = params_keys(), set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    wrong = []
    for where, line, tokens in documented():
        if where != guide:
            continue
        module = module_of(tokens)
        if module:
            start = tokens.index("-m") + 2
            listed = help_of(module)
            for token in tokens[start:]:
                option = token.split("=", 1)[0]
                if option.startswith("-") and not re.search(rf"(^|[\s,\[]){re.escape(option)}\b", listed):
                    wrong.append(f"{line}: python -m {module} has no option {option}")
        for key in set_keys(tokens):
            if key not in keys:
                wrong.append(f"{line}: params.yaml has no key {key}")
        if tokens[0] == "make" and len(tokens) > 1 and tokens[1] not in targets:
            wrong.append(f"{line}: the Makefile has no target {tokens[1]}")
    assert not wrong, f"{guide}:\n" + "\n".join(wrong)
