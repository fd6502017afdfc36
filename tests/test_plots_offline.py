"""`make plots` writes a page that draws every chart with no network, checked in headless Chromium.

The page is built as `make plots` builds it (tools/plots_page.py), from the repository's plots/
data and dvc.yaml's plots section, copied into a DVC repository of their own under tmp. The test
checks that no script, style or image comes from the network, opens the page in Debian's
headless Chromium with every host name unresolvable (so any fetch would fail, as offline), and
reads from the rendered DOM that each chart drew: the template's vegaEmbed wrapper draws SVG and
marks each chart's div drawn, empty or failed, and each drawn chart's SVG must hold data marks
(vega's "role-mark" groups: the lines, points and labels, not the axes).

Skipped, saying why, only where Chromium is not installed (the Chromium test), or where npm is not
and the Vega libraries are not in .kd-node/ yet (both tests); .ci/run installs what is missing.
"""

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest
import yaml
from conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DATA_SUFFIXES = (".json", ".csv", ".tsv", ".yaml")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg")
NETWORK_RESOURCE = re.compile(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", re.I)

# npm is needed only to install the libraries, once (tools/plots_page.py pins them).
LIBRARIES_INSTALLED = all((ROOT / ".kd-node" / "node_modules" / package / "package.json").is_file()
                          for package in ("vega", "vega-lite", "vega-embed"))
pytestmark = pytest.mark.skipif(
    shutil.which("npm") is None and not LIBRARIES_INSTALLED,
    reason="npm is not installed and .kd-node/ has no Vega libraries (Debian: apt-get install nodejs npm; "
           "`bash .ci/run` installs it)")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium; `bash .ci/run` installs it)")


def plot_definitions():
    """``(path, properties)`` for each entry of dvc.yaml's top-level plots section."""
    for entry in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]:
        if isinstance(entry, str):
            yield entry, {}
        else:
            (path, properties), = entry.items()
            yield path, properties or {}


def expected_charts(repo):
    """How many Vega charts the page should draw from ``repo``: one per data file a definition
    names (a folder gives one per file in it); definitions whose data is absent draw none."""
    count = 0
    for path, _ in plot_definitions():
        target = repo / path
        if target.is_dir():
            count += sum(1 for file in target.rglob("*") if file.suffix in DATA_SUFFIXES)
        elif target.is_file() and target.suffix in DATA_SUFFIXES:
            count += 1
    return count


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The offline page, built in a DVC repository holding only the plots and their definitions."""
    repo = tmp_path_factory.mktemp("plots_repo")
    shutil.copytree(ROOT / "plots", repo / "plots")
    definitions = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": definitions}, sort_keys=False))
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=repo, check=True)
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots", dirs_exist_ok=True)  # kd's Vega templates
    built = subprocess.run([sys.executable, str(ROOT / "tools" / "plots_page.py"), "--out", "page"], cwd=repo,
                           text=True, capture_output=True, timeout=300)
    assert built.returncode == 0, f"tools/plots_page.py failed:\n{built.stdout}{built.stderr}"
    return repo, repo / "page" / "index.html"


class Charts(HTMLParser):
    """From a rendered DOM: each chart div's data-kd-chart state and the data marks in its SVG."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__()
        self.charts = {}  # div id -> {"state": drawn | empty | failed, "svg": bool, "marks": int}
        self.stack = []   # (tag, chart id or None, inside a data-mark group)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        chart, in_marks = self.stack[-1][1:] if self.stack else (None, False)
        if "data-kd-chart" in attrs:
            chart = attrs.get("id")
            self.charts[chart] = {"state": attrs["data-kd-chart"], "svg": False, "marks": 0}
        if chart is not None:
            if tag == "svg":
                self.charts[chart]["svg"] = True
            if in_marks and tag in ("path", "text", "rect", "line"):
                self.charts[chart]["marks"] += 1
        in_marks = in_marks or (tag == "g" and "role-mark" in (attrs.get("class") or "").split())
        if tag not in self.VOID:
            self.stack.append((tag, chart, in_marks))

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, -1, -1):  # close up to the matching open tag
            if self.stack[depth][0] == tag:
                del self.stack[depth:]
                break


def test_page_loads_nothing_from_the_network(page):
    repo, index = page
    html = index.read_text(encoding="utf8")
    # The tags of the page itself, without the inlined libraries' code (which builds tags of its own
    # in strings, such as vega-tooltip's <img src=...>).
    tags = re.sub(r"(<script\b[^>]*>).*?(</script>)", r"\1\2", html, flags=re.S | re.I)
    remote = [match[0] for match in NETWORK_RESOURCE.finditer(tags)]
    assert not remote, f"{index.name}: expected no resource from the network, found {remote}"
    assert "cdn.jsdelivr.net" not in html, f"{index.name}: DVC's CDN script tags are still in the page"
    for src in re.findall(r"<img\b[^>]*\bsrc=\"([^\"]+)\"", tags):
        assert (index.parent / src).is_file(), f"{index.name}: image {src} is not beside the page"
    images = sum(1 for path, _ in plot_definitions() if (repo / path).suffix in IMAGE_SUFFIXES)
    assert tags.count("<img ") == images, f"{index.name}: expected {images} image plot(s)"


@needs_chromium
def test_every_chart_draws_in_headless_chromium(page, tmp_path):
    repo, index = page
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no host name resolves: the page must need no network
        "--virtual-time-budget=10000",            # run the page's scripts to completion before the dump
        "--window-size=1280,4000", "--dump-dom", index.as_uri(),
    ]
    result = subprocess.run(command, text=True, capture_output=True, timeout=180)
    assert result.returncode == 0 and "<html" in result.stdout, (
        f"chromium failed (exit status {result.returncode}): {result.stderr[-2000:]}")
    parser = Charts()
    parser.feed(result.stdout)
    charts = parser.charts
    expected = expected_charts(repo)

    failed = {name: chart for name, chart in charts.items() if chart["state"] not in ("drawn", "empty")}
    assert not failed, f"{index.name}: chart(s) did not draw: {failed}"
    drawn = [name for name, chart in charts.items() if chart["state"] == "drawn"]
    assert len(drawn) == expected, (
        f"{index.name}: expected {expected} drawn chart(s), one per plot with data in dvc.yaml; drew {sorted(drawn)}")
    blank = [name for name in drawn if not (charts[name]["svg"] and charts[name]["marks"])]
    assert not blank, f"{index.name}: chart(s) with no SVG or no data marks: {blank}"
