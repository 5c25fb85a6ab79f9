"""The README and docs/ as a newcomer reads them: every relative link leads to a file of the project, the README
stays a front door (not a manual), its verdict is the committed one, and the charts draw offline (slow). The
commands themselves, run in order, and the outputs the pages quote: tests/test_guides.py."""

import re
import shutil
import subprocess

import pytest
from conftest import ROOT, committed, make_project

PAGES = [ROOT / "README.md", ROOT / "RESULTS.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
README_MAX_WORDS = 2000


def relative_links(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold commands, not links
    return [m for m in LINK.findall(text) if not re.match(r"[a-z]+:", m) and not m.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_to_a_file(page):
    broken = [link for link in relative_links(page) if not (page.parent / link.split("#")[0]).exists()]
    assert broken == [], f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [gone](docs/nothing.md) [web](https://dvc.org) `[code](x.md)`\n")
    assert relative_links(page) == ["page.md", "docs/nothing.md", "x.md"]


def test_the_readme_is_a_front_door():
    words = len(re.sub(r"```.*?```", "", (ROOT / "README.md").read_text(), flags=re.S).split())
    assert words <= README_MAX_WORDS, f"README.md has {words} words outside code blocks; move detail to docs/"


def test_the_readmes_verdict_is_the_committed_one():
    """`make run` reproduces the committed runs bit for bit and leaves their comparison as committed: the
    README's quote under "Reading the verdict" is that comparison's sentence, word for word, as is the Verdict
    line of plots/comparison.md the README points to."""
    import json

    readme = (ROOT / "README.md").read_text()
    verdict = json.loads(committed("metrics/comparison.json"))["verdict"]
    quoted = re.search(r"The default run \(3 seeds, committed here\) says: \*(.*?)\*", readme, flags=re.S).group(1)
    assert " ".join(quoted.split()) == verdict
    assert f"**Verdict:** {verdict}" in committed("plots/comparison.md")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def rendered_charts(page, tmp_path):
    """(charts asked for, charts drawn) by a headless Chromium with every host name unresolvable: no network."""
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}/c",
                          "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=20000", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=300).stdout
    asked = page.read_text().count("vegaEmbed('#")
    return asked, len(re.findall(r'class="[^"]*vega-embed', dom))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test-slow installs it with apt)")
def test_dvc_plots_draw_every_chart_offline(tmp_path):
    """`dvc plots show` on the committed curves, opened in a real browser with no network: every chart is drawn
    (the libraries are inline); DVC's own page, which loads them from a CDN, draws none there."""
    project = make_project(tmp_path / "proj")
    for name in ("test_acc", "val_acc", "train_loss", "lr"):
        (project.path / "plots" / "curves").mkdir(parents=True, exist_ok=True)
        (project.path / "plots" / "curves" / f"{name}.csv").write_text(committed(f"plots/curves/{name}.csv"))
    project.dvc("plots", "show", "-o", "ours")
    asked, drawn = rendered_charts(project.path / "ours" / "index.html", tmp_path)
    assert asked == 4 and drawn == asked
    from dvc_render.html import PAGE_HTML

    (tmp_path / "cdn.html").write_text(PAGE_HTML)
    project.dvc("plots", "show", "-o", "cdn", "--html-template", str(tmp_path / "cdn.html"))
    asked, drawn = rendered_charts(project.path / "cdn" / "index.html", tmp_path)
    assert asked == 4 and drawn == 0
