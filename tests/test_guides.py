"""Every command the README and the guides show. Fast: each option of a project command (`python -m thesislab.*`,
`python -m stages.*`, `python -m bench.*`) is one its --help lists, each `-S key=...` (dvc exp run, the sweep) names
a key of params.yaml, each `make` target exists, each of the docs' marks for this test names a command. Slow: the
README and every guide run as typed, in the order a reader meets them, in one fresh clone, each command's exit
status and the outputs the docs quote checked (tests/guides.py)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import guides
import pytest
from conftest import ROOT, default_params, make_image_folder

PROJECT_MODULES = ("thesislab", "stages", "bench")


def tokens_of(command):
    """Each command of a shell line, as tokens: continuation lines joined, comments dropped, `a && b` split."""
    current = []
    for token in shlex.split(command.replace("\\\n", " "), comments=True) + ["&&"]:
        if token in ("&&", "||", ";", "|"):
            if current:
                yield current
            current = []
        else:
            current.append(token)


def documented():
    """(guide, line of the command, tokens) for every command of every guide."""
    for command in guides.all_commands():
        for tokens in tokens_of(command.text):
            yield command.guide, shlex.join(tokens), tokens


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


@pytest.mark.parametrize("guide", guides.GUIDES)
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


# --- the marks the guides carry for the run below ---------------------------------------------------------------

def test_every_mark_names_a_command_and_every_skip_says_why():
    commands = guides.all_commands()  # raises on a mark that names no command
    skipped = [c for c in commands if c.skip]
    assert skipped and all(len(c.skip.split()) >= 3 for c in skipped)
    assert len(skipped) < len(commands) / 2, "most of the guides should run as typed"
    quoted = {c.where: c.text.split()[:4] for c in commands if c.quoted}
    assert any(t[:2] == ["make", "run"] for t in quoted.values()), quoted
    assert guides.shrink_command().startswith("python -m thesislab.sweep -S ")


def test_a_stale_mark_is_refused(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("<!-- guide-test skips `make gone`: a reason here -->\n```bash\nmake run\n```\n")
    monkeypatch.setattr(guides, "ROOT", tmp_path)
    with pytest.raises(ValueError, match="skips `make gone`, which no command starts with"):
        guides.commands_of("page.md")


def test_commands_keep_their_continuation_lines_and_quotes(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("text\n```bash\n# a comment\necho a \\\n  b   # two lines\n\necho c\n```\n"
                    "<!-- guide-test: the block below is all that `echo c` prints -->\n```\nc\n```\n")
    monkeypatch.setattr(guides, "ROOT", tmp_path)
    first, second = guides.commands_of("page.md")
    assert (first.line, first.text, second.line, second.text) == (4, "echo a \\\n  b   # two lines", 7, "echo c")
    assert (first.quoted, second.quoted, second.quoted_all) == ([], ["c"], True)


def test_a_quote_is_matched_line_by_line_with_timings_and_elisions_ignored():
    some = guides.Command("g", 1, "x", quoted=["train@static-0 done test 41.55% 13s [vm]", "...",
                                                 "identical (md5 ...)"])
    printed = ["train@static-0  done  test 41.55%  52s  [ci-host]", "other", "identical (md5 0123abcd)"]
    assert guides.unlike_the_quote(some, printed) == []
    assert guides.unlike_the_quote(some, printed[1:]) == ["missing: train@static-0 done test 41.55%"]
    every = guides.Command("g", 1, "x", quoted=["Data and pipelines are up to date."], quoted_all=True)
    assert guides.unlike_the_quote(every, ["Data and pipelines are up to date."]) == []
    assert guides.unlike_the_quote(every, [" M params.yaml", "Data and pipelines are up to date."]) == [
        "not quoted: M params.yaml"]


def test_the_session_stops_at_the_first_failing_command_and_keeps_state(tmp_path):
    commands = [guides.Command("g", 1, "cd sub && export WORD=kept"), guides.Command("g", 2, "pwd; echo $WORD"),
                guides.Command("g", 3, "echo skipped", skip="a reason here"), guides.Command("g", 4, "false"),
                guides.Command("g", 5, "echo never")]
    (tmp_path / "sub").mkdir()
    outcomes = guides.run_guides(commands, tmp_path, {"PATH": "/usr/bin:/bin"}, timeout=60)
    assert [(o.command.line, o.rc) for o in outcomes] == [(1, 0), (2, 0), (4, 1)]
    assert outcomes[1].output == [str(tmp_path / "sub"), "kept"]


# --- the README and every guide, as typed, in order, in a fresh clone (slow) ----------------------------------------

@pytest.mark.slow
@pytest.mark.first
def test_the_guides_run_as_typed_in_order_in_a_fresh_clone(tmp_path):
    """The README's and every guide's commands in one bash session, in a clone of the project as shipped (its runs
    shrunk to seconds by the command the README shows): each exits 0 and prints what its page quotes."""
    venv, home = Path(sys.prefix), tmp_path / "home"
    home.mkdir()
    env = guides.reader_env(home, venv)
    make_image_folder(home / "my_images", classes=("cat", "dog"), per_split=(8, 4), size=16)  # docs/datasets.md's
    shipped = guides.shipped_and_shrunk(tmp_path / "shipped", env, venv)
    reader = tmp_path / "reader"
    guides.run(["git", "clone", "-q", str(shipped), str(reader)], tmp_path, env)
    guides.link_venv(reader, venv)
    commands = guides.all_commands()
    outcomes = guides.run_guides(commands, reader, env, timeout=3600)
    print("\n".join(f"{o.seconds:7.1f} s  rc {o.rc}  {o.command.where}  {o.command.text.splitlines()[0][:70]}"
                    for o in outcomes))
    failed = [o for o in outcomes if o.rc != 0]
    assert not failed, (f"{failed[0].command.where}: `{failed[0].command.text}` exited {failed[0].rc}:\n"
                        + "\n".join(failed[0].output[-40:]))
    assert [o.command for o in outcomes] == [c for c in commands if not c.skip]
    unlike = {o.command.where: guides.unlike_the_quote(o.command, o.output) for o in outcomes if o.command.quoted}
    assert unlike and not any(unlike.values()), "\n".join(
        f"{where}: {line}" for where, lines in unlike.items() for line in lines)
