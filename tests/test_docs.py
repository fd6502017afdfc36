"""The docs stay true: README.md and docs/*.md are checked against the repository.

- Every relative link resolves to a file or folder of the repository, and every ``#anchor`` to
  a heading of the page it names, as GitHub renders headings (see :func:`slug`).
- Every ``make <target>`` shown in code (inline or in a fenced block) is a target of the Makefile.
- Every ```` ```yaml ```` block is a piece of params.yaml: it is deep-merged into the default
  params.yaml (mappings merge key by key, any other value replaces) and the result must pass
  kd's own validation, ``kd.params.parse_params``. A block may be marked otherwise by an HTML
  comment, invisible on GitHub, alone on the last non-blank line before its opening fence:

      <!-- refused -->      the block is an example of a refusal: merged the same way, it must be
                           refused (ParamsError), so the example stays an example of one
      <!-- not params -->   the block is YAML but not params (a dvc.yaml or workflow excerpt):
                           not checked

  A block with the same key twice is refused outright: YAML would keep only the last, so the
  others would go unchecked. Blocks that are not YAML at all are fenced as ``text`` or ``bash``.
- Every statistic quoted in prose, outside the markers `make readme` fills (a mean ± std, the three
  per-seed values of a seeds report), is in a committed report or record: a hand copy left behind
  when its run was redone shows here.
- README.md stays a two-minute read (at most 250 lines, 15 KB), each docs page starts with its
  title and a sentence saying what the reader can do there, and tools/readme.py (`make readme`)
  pastes reports wherever their markers are and leaves other pages untouched.
"""

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
import urllib.parse

import pytest
import yaml
from conftest import ROOT

from kd.errors import ParamsError
from kd.params import parse_params

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
YAML_MARKERS = ("refused", "not params")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(?P<text>.*?)\s*#*\s*$")
MAKE_TARGET = re.compile(r"(?<![\w/.-])make\s+(?P<target>[A-Za-z0-9][\w.-]*)")
MAKEFILE_RULE = re.compile(r"^(?P<targets>[^\s#$:=][^:=]*?)\s*:(?!=)")
# Pointers outside Markdown links (see pointer_problems): a page named by its path, and a section
# named by its heading, quoted after the page or, unquoted, as "(page: Heading)".
PAGE_NAME = r"(?P<page>README(?:\.md)?|(?:docs/)?[\w-]+\.md)"
PAGE_MENTION = re.compile(r"(?<![\w/.-])(?P<page>README\.md|docs/[\w-]+\.md)(?:#(?P<anchor>[\w-]+))?")
NAMED_SECTION = re.compile(rf"(?<![\w/.\"'-]){PAGE_NAME}(?::\s*|,\s*|\s+)[\"“](?P<heading>[^\"”\n]+)[\"”]")
NAMED_SECTION_BARE = re.compile(rf"\({PAGE_NAME}:\s+(?P<heading>[^\"“()\n:]+?)\s*\)")


def where(page, line):
    return f"{page.relative_to(ROOT)}:{line}"


def split_fences(text):
    """The page's lines with fenced code blanked out, and the fenced blocks apart.

    Returns ``(prose, blocks)``: ``prose`` has the page's line count (so line numbers hold) and
    each block is ``(opening line number, info string, dedented content, marker)``, where
    ``marker`` is the text of an HTML comment alone on the last non-blank line before the fence."""
    lines = text.splitlines()
    prose, blocks, open_fence = [], [], None
    for number, line in enumerate(lines, start=1):
        match = FENCE.match(line)
        if open_fence is None and match:
            before = [previous.strip() for previous in lines[:number - 1] if previous.strip()]
            comment = re.fullmatch(r"<!--\s*(.*?)\s*-->", before[-1]) if before else None
            open_fence = (number, match["indent"], match["fence"], match["info"].strip(),
                          comment[1] if comment else None, [])
            prose.append("")
        elif open_fence is not None:
            start, indent, fence, info, marker, content = open_fence
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                blocks.append((start, info, "\n".join(content), marker))
                open_fence = None
            else:
                content.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            prose.append("")
        else:
            prose.append(line)
    assert open_fence is None, f"{open_fence[0]}: a code fence that is never closed"
    return prose, blocks


def slug(heading):
    """The anchor GitHub gives a heading: its text as rendered (links become their text, code its
    content), lowercased, with every character but letters, digits, '_', '-' and spaces removed,
    and spaces turned into hyphens (so "a — b" gives "a--b")."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = INLINE_CODE.sub(lambda match: match[2], text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page):
    """Every anchor of a page; a repeated heading gets -1, -2, … as on GitHub."""
    prose, _ = split_fences(page.read_text())
    found = set()
    for line in prose:
        match = HEADING.match(line)
        if match:
            base = anchor = slug(match["text"])
            count = 0
            while anchor in found:
                count += 1
                anchor = f"{base}-{count}"
            found.add(anchor)
    return found


def tracked_text_files():
    """Every file git tracks that reads as text (UTF-8, no NUL byte); README.md and docs/ alone
    outside a git checkout."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return PAGES
    files = []
    for name in sorted(filter(None, listed.decode().split("\0"))):
        path = ROOT / name
        try:
            data = path.read_bytes()
        except OSError:  # listed but deleted in the work tree
            continue
        if b"\0" not in data:
            try:
                data.decode()
            except UnicodeDecodeError:
                continue
            files.append(path)
    return files


def resolve_page(name, folders):
    """The file ``name`` ("README" meaning README.md) names, looked for in each folder in turn, or None."""
    name = "README.md" if name == "README" else name
    for folder in folders:
        if (folder / name).exists():
            return (folder / name).resolve()
    return None


def pointer_problems(path):
    """Every pointer of one file that leads nowhere, for any text file of the repository.

    A pointer is, in a Markdown page, a relative link ``[text](target#anchor)`` (resolved from the
    page's folder, code spans and fenced blocks skipped); in any other file, a mention of
    ``README.md`` or ``docs/<name>.md``, with or without ``#anchor``, bare or as a link target
    (resolved from the repository root: how comments and code name files); and in any file a
    section named by its heading, ``<page> "Heading"``, ``<page>: "Heading"``, ``<page>, "Heading"``
    or, unquoted, ``(<page>: Heading)``, where ``<page>`` is README, README.md, docs/<name>.md or
    <name>.md: the page must have that heading (compared by anchor, so case and punctuation aside)."""
    markdown = path.suffix == ".md"
    text = path.read_text()
    lines = split_fences(text)[0] if markdown else text.splitlines()
    problems = []

    def check(number, shown, page, anchor, folders, named=False):
        resolved = resolve_page(page, folders) if page else path
        if resolved is None:
            problems.append(f"{where(path, number)}: {shown}: {page} does not exist"
                            + (f" (expected a path relative to the folder of {path.name})" if markdown else ""))
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            what = "heading" if named else "heading with anchor"
            problems.append(f"{where(path, number)}: {shown}: {resolved.relative_to(ROOT)} has no {what} "
                            + (f"{named!r}" if named else f"#{anchor}"))

    for number, line in enumerate(lines, start=1):
        if markdown:
            line = INLINE_CODE.sub("code", line)
            for match in LINK.finditer(line):
                target = match["target"]
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:: not ours to check
                    continue
                page, _, anchor = urllib.parse.unquote(target).partition("#")
                check(number, f"link {target}", page, anchor, [path.parent])
        else:
            for match in PAGE_MENTION.finditer(line):
                check(number, f"{match[0]}", match["page"], match["anchor"], [ROOT])
        for match in [*NAMED_SECTION.finditer(line), *NAMED_SECTION_BARE.finditer(line)]:
            check(number, match[0].strip(), match["page"], slug(match["heading"]), [path.parent, ROOT, ROOT / "docs"],
                  named=match["heading"])
    return problems


def makefile_targets():
    targets = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = MAKEFILE_RULE.match(line)
        if match:
            targets.update(match["targets"].split())
    return targets


def make_targets_named(page):
    """``(line, target)`` for every ``make <target>`` in the page's code, inline or fenced."""
    prose, blocks = split_fences(page.read_text())
    named = [(number, match["target"]) for number, line in enumerate(prose, start=1)
             for code in INLINE_CODE.finditer(line) for match in MAKE_TARGET.finditer(code[2])]
    for start, _, content, _ in blocks:
        for offset, line in enumerate(content.splitlines(), start=1):
            named += [(start + offset, match["target"]) for match in MAKE_TARGET.finditer(line)]
    return named


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, refusing a mapping with the same key twice (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        repeated = sorted({str(key) for key in keys if keys.count(key) > 1})
        if repeated:
            raise yaml.constructor.ConstructorError(None, None, f"key(s) {', '.join(repeated)} given twice",
                                                    node.start_mark)
        return super().construct_mapping(node, deep=deep)


def deep_merge(base, update):
    """``base`` with ``update`` merged in: mappings key by key, any other value replacing."""
    merged = dict(base)
    for key, value in update.items():
        merged[key] = (deep_merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict)
                       else value)
    return merged


def yaml_block_problem(block, marker, default_params):
    """Why a ```yaml block breaks the convention of this module's docstring, or None."""
    if marker == "not params":
        return None
    try:
        fragment = yaml.load(block, Loader=UniqueKeyLoader)
    except yaml.YAMLError as error:
        return f"not valid YAML: {' '.join(str(error).split())}"
    if not isinstance(fragment, dict):
        return f"expected a mapping of params.yaml keys, found {type(fragment).__name__}"
    try:
        parse_params(deep_merge(copy.deepcopy(default_params), fragment))
    except ParamsError as error:
        return None if marker == "refused" else f"params validation refused it: {error}"
    return "marked <!-- refused --> but params validation accepted it" if marker == "refused" else None


def load_readme_tool():
    spec = importlib.util.spec_from_file_location("readme_tool", ROOT / "tools" / "readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------- the docs


def test_docs_exist():
    names = {page.name for page in PAGES}
    for name in ("README.md", "your-data.md", "losses.md", "speed.md"):
        assert name in names, f"{name}: expected in README.md or docs/"


def test_every_pointer_resolves():
    # Every git-tracked text file: the docs' links, and the comments and docstrings that send a reader
    # to a page or a section of one (params.yaml, configs/, the Makefile, .dvc/config, workflows, code).
    problems = [problem for path in tracked_text_files() for problem in pointer_problems(path)]
    if problems:
        pytest.fail("pointers to nothing:\n" + "\n".join(problems), pytrace=False)


def test_every_make_target_named_exists():
    targets = makefile_targets()
    problems = [f"{where(page, number)}: `make {target}`: the Makefile has no target {target!r}"
                for page in PAGES for number, target in make_targets_named(page) if target not in targets]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_every_yaml_block_is_accepted_params(default_params_raw):
    problems, checked = [], 0
    for page in PAGES:
        for start, info, content, marker in split_fences(page.read_text())[1]:
            if info.split()[:1] != ["yaml"]:
                continue
            if marker is not None and marker.endswith((":start", ":end")):
                marker = None  # a report's marker (tools/readme.py), not one of this convention's
            if marker is not None and marker not in YAML_MARKERS:
                problems.append(f"{where(page, start)}: <!-- {marker} --> before a yaml block; expected "
                                + " or ".join(f"<!-- {known} -->" for known in YAML_MARKERS) + " or nothing")
                continue
            problem = yaml_block_problem(content, marker, default_params_raw)
            checked += 1
            if problem:
                problems.append(f"{where(page, start)}: yaml block: {problem}")
    assert checked, "no ```yaml block found in README.md or docs/: is the fence parser broken?"
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_readme_is_a_two_minute_read():
    readme = ROOT / "README.md"
    lines, size = len(readme.read_text().splitlines()), len(readme.read_bytes())
    assert lines <= 250 and size <= 15_000, f"README.md: {lines} lines, {size} bytes; expected at most 250 and 15 KB"


def test_every_docs_page_says_what_it_is_for():
    for page in PAGES[1:]:
        lines = [line for line in page.read_text().splitlines() if line.strip()]
        assert lines[0].startswith("# "), f"{where(page, 1)}: expected the page's title as a '# ' heading"
        assert not lines[1].startswith(("#", "```", "|", "<!--")), (
            f"{page.relative_to(ROOT)}: expected a sentence after the title saying what the reader can do there")


# ------------------------------------------------------------------------ the checks themselves


@pytest.mark.parametrize("heading, anchor", [
    ("Ship the student: int8 TFLite, measured, and registered", "ship-the-student-int8-tflite-measured-and-registered"),
    ("kd — knowledge distillation for Keras, as a DVC pipeline", "kd--knowledge-distillation-for-keras-as-a-dvc-pipeline"),
    ("How the README's run was made", "how-the-readmes-run-was-made"),
    ("The `loss` of [a model](x.md)", "the-loss-of-a-model"),
])
def test_slug_is_githubs(heading, anchor):
    assert slug(heading) == anchor


def test_fences_markers_and_link_check(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\nSee [there](#title), [gone](#nowhere) and `[not](a-link.md)`.\n\n"
                    "<!-- refused -->\n\n  ```yaml\n  seed: -1\n  ```\n\n```bash\n# not a heading\nmake nothing\n```\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)  # where() names files relative to ROOT
    prose, blocks = split_fences(page.read_text())
    assert blocks[0] == (7, "yaml", "seed: -1", "refused")
    assert anchors(page) == {"title"}
    assert pointer_problems(page) == [f"page.md:3: link #nowhere: page.md has no heading with anchor #nowhere"]
    assert make_targets_named(page) == [(13, "nothing")]


def test_pointers_are_checked_in_every_kind_of_file(tmp_path, monkeypatch):
    # A planted pointer to a missing page or heading is caught whatever the file: a comment in
    # params.yaml, the Makefile, a config, a workflow or code. The pointers are assembled here
    # ("READ" + "ME") so that this file's own text holds none that leads nowhere.
    readme, missing = "READ" + "ME", "cd"
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# kd\n\n## Results\n")
    (tmp_path / "docs" / "teams.md").write_text("# Teams\n\nWhat for.\n\n## Share results\n\n## CI\n")
    planted = {
        "params.yaml": f"loss: hinton  # a list of terms ({readme}: the loss)\nseed: 0  # ({readme}: Results)\n",
        "Makefile": f'# overridden: {readme} "Share results"\n# overridden: docs/teams.md, "Share results"\n',
        "configs/bf16.txt": "# float32 on CPUs (docs/speed.md: Precision)\n",
        ".github/workflows/ci.yml": f"# what CI reruns: (docs/teams.md#ci) and (docs/teams.md#{missing})\n",
        ".dvc/config": f'    # (docs/teams.md: "Share results"), ({readme}.md: "Share results")\n',
        "tool.py": f'"""See {readme}.md#results and {readme}.md#the-loss."""\n',
    }
    for name, text in planted.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    problems = {name: pointer_problems(tmp_path / name) for name in planted}
    assert problems == {
        "params.yaml": [f"params.yaml:1: ({readme}: the loss): README.md has no heading 'the loss'"],
        "Makefile": [f"Makefile:1: {readme} \"Share results\": README.md has no heading 'Share results'"],
        "configs/bf16.txt": ["configs/bf16.txt:1: docs/speed.md: docs/speed.md does not exist",
                             "configs/bf16.txt:1: (docs/speed.md: Precision): docs/speed.md does not exist"],
        ".github/workflows/ci.yml": [f".github/workflows/ci.yml:1: docs/teams.md#{missing}: docs/teams.md has no "
                                     f"heading with anchor #{missing}"],
        ".dvc/config": [f".dvc/config:1: {readme}.md: \"Share results\": README.md has no heading 'Share results'"],
        "tool.py": [f"tool.py:1: {readme}.md#the-loss: README.md has no heading with anchor #the-loss"],
    }
    # and the real repository's files of those kinds are among those checked
    monkeypatch.undo()
    checked = {path.relative_to(ROOT).as_posix() for path in tracked_text_files()}
    assert {"params.yaml", "Makefile", ".dvc/config", "configs/bf16.txt", "README.md", "tests/test_docs.py"} <= checked
    assert any(name.startswith(".github/workflows/") for name in checked)


def test_yaml_block_convention(default_params_raw):
    assert yaml_block_problem("seed: 3", None, default_params_raw) is None
    assert "refused it: seed" in yaml_block_problem("seed: -1", None, default_params_raw)
    assert yaml_block_problem("seed: -1", "refused", default_params_raw) is None
    assert "accepted" in yaml_block_problem("seed: 3", "refused", default_params_raw)
    assert "given twice" in yaml_block_problem("training:\n  loss: dkd\n  loss: dist", None, default_params_raw)
    assert yaml_block_problem("stages: {}", "not params", default_params_raw) is None


# --------------------------------------------------------------------------------- make readme


def test_readme_tool_pastes_reports_where_their_markers_are(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "reports" / "seeds").mkdir(parents=True)
    (tmp_path / "reports" / "comparison.md").write_text("| new comparison |\n")
    (tmp_path / "reports" / "seeds" / "best.md").write_text("best over seeds\n")
    (tmp_path / "reports" / "seeds" / "lost.md").write_text("no page has its marker\n")
    readme = tmp_path / "README.md"
    readme.write_text("# kd\n<!-- comparison:start -->\nold\n<!-- comparison:end -->\n"
                      "<!-- seeds:bf16:start -->\nno report: kept\n<!-- seeds:bf16:end -->\n")
    seeds_page = tmp_path / "docs" / "configurations.md"
    seeds_page.write_text("# c\n\n<!-- seeds:best:start -->\nold\n<!-- seeds:best:end -->\ntail\n")
    untouched = tmp_path / "docs" / "gpu.md"
    untouched.write_text("# GPU\n\nno markers here\n")
    stamp = 1_000_000_000
    os.utime(untouched, (stamp, stamp))

    changed = load_readme_tool().paste_reports(tmp_path)

    assert sorted(changed) == sorted([readme, seeds_page])
    assert readme.read_text() == ("# kd\n<!-- comparison:start -->\n| new comparison |\n<!-- comparison:end -->\n"
                                  "<!-- seeds:bf16:start -->\nno report: kept\n<!-- seeds:bf16:end -->\n")
    assert seeds_page.read_text() == "# c\n\n<!-- seeds:best:start -->\nbest over seeds\n<!-- seeds:best:end -->\ntail\n"
    assert untouched.read_text() == "# GPU\n\nno markers here\n" and untouched.stat().st_mtime == stamp
    assert "not pasted anywhere: reports/seeds/lost.md" in capsys.readouterr().out
    assert load_readme_tool().paste_reports(tmp_path) == []  # a second run changes nothing


def test_readme_tool_compares_two_seeds_reports_where_a_page_asks(tmp_path):
    from kd.seeds import summarise

    def report(student_accuracy):
        row = {"teacher": "teacher", "accuracy": student_accuracy, "errors": round((1 - student_accuracy) * 10000)}
        summary = summarise({0: {"student": row}, 1: {"student": {**row, "errors": row["errors"] + 2}}})
        return {**summary, "pipeline_seconds": {"0": 600.0, "1": 620.0}}

    (tmp_path / "docs").mkdir()
    (tmp_path / "reports" / "seeds").mkdir(parents=True)
    (tmp_path / "reports" / "seeds" / "default.json").write_text(json.dumps(report(0.9860)))
    (tmp_path / "reports" / "seeds" / "bf16.json").write_text(json.dumps(report(0.9850)))
    page = tmp_path / "docs" / "speed.md"
    page.write_text("<!-- seeds:bf16-vs-default:start -->\nold\n<!-- seeds:bf16-vs-default:end -->\n"
                    "<!-- seeds:bf16-vs-best:start -->\nno best report: kept\n<!-- seeds:bf16-vs-best:end -->\n")

    load_readme_tool().paste_reports(tmp_path)

    text = page.read_text()
    assert "| student | 141.0 ± 1.4 (140 / 142) | 151.0 ± 1.4 (150 / 152) | +10 / +10 | +10.0 ± 0.0 | more errors |" in text
    assert "no best report: kept" in text



def test_every_marker_holds_what_its_report_or_record_renders():
    # A figure between markers is pasted by `make readme` from a committed report or record: a hand
    # edit of either side shows here.
    tool = load_readme_tool()
    rendered = tool.reports(ROOT)
    checked = 0
    for page in tool.pages(ROOT):
        text = page.read_text()
        for marker, content in FILLED_MARKER.findall(text):
            assert marker in rendered, f"{page.relative_to(ROOT)}: <!-- {marker} --> has no report or record"
            assert content == rendered[marker][1], (f"{page.relative_to(ROOT)}: <!-- {marker} --> differs from what "
                                                    f"{rendered[marker][0].relative_to(ROOT)} renders; run make readme")
            checked += 1
    assert checked >= 2


# A statistic quoted in prose, outside the markers `make readme` fills: a mean ± std, or the three
# per-seed values of a seeds report ("78 / 73 / 70"), signs written either way.
QUOTED_STATISTIC = re.compile(r"(?<![\d./])[+−-]?\d+(?:\.\d+)?(?: ± \d+(?:\.\d+)?|(?: / [+−-]?\d+(?:\.\d+)?){2}(?![\d.]| /))")
FILLED_MARKER = re.compile(r"<!-- (\S+):start -->\n(.*?)<!-- \1:end -->", re.S)


def unrecorded_statistics(pages, records):
    """``(page, line, figure)`` for each statistic quoted in a page's prose that no text of
    ``records`` holds: a figure copied by hand from a run, left behind when the run was redone."""
    def plain(text):
        return text.replace("−", "-")

    corpus = plain("\n".join(records))
    found = []
    for page in pages:
        prose = FILLED_MARKER.sub(lambda match: "\n" * match.group(0).count("\n"), page.read_text())
        for number, line in enumerate(prose.splitlines(), 1):
            for match in QUOTED_STATISTIC.finditer(line):
                figure = plain(match.group(0)).lstrip("+")
                if not re.search(rf"(?<![\d.]){re.escape(figure)}(?![\d])", corpus):
                    found.append((page, number, match.group(0)))
    return found


def test_every_statistic_quoted_in_prose_is_in_a_committed_report():
    tool = load_readme_tool()
    records = [path.read_text() for path in sorted((ROOT / "reports").rglob("*")) if path.suffix in (".md", ".json")]
    records += [text for _, text in tool.reports(ROOT).values()]
    problems = unrecorded_statistics(PAGES, records)
    assert not problems, "statistics no committed report holds (quote the report's figures or render it): " + "; ".join(
        f"{where(page, line)} {figure!r}" for page, line, figure in problems)


def test_a_statistic_no_report_holds_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("The student makes 73.7 ± 4.0 errors (78 / 73 / 70), +0.18 ± 0.02 pt over scratch.\n"
                    "Later it made 71.9 ± 1.0 (72 / 71 / 73).\n"
                    "<!-- seeds:x:start -->\n| 12.0 ± 1.0 |\n<!-- seeds:x:end -->\n")
    report = "| student | 73.7 ± 4.0 | 78 / 73 / 70 |\n| gain | +0.18 ± 0.02 pt |"
    assert [(line, figure) for _, line, figure in unrecorded_statistics([page], [report])] == [
        (2, "71.9 ± 1.0"), (2, "72 / 71 / 73")]
