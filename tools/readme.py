"""Paste the reports written by runs into README.md and docs/*.md, between their markers.

``<!-- comparison:start -->`` … ``<!-- comparison:end -->`` gets reports/comparison.md (the
last `dvc repro`); ``<!-- seeds:<config>:start -->`` … ``<!-- seeds:<config>:end -->`` gets
reports/seeds/<config>.md (the last `make seeds CONFIG=<config>`). A marker may sit in any of
those pages (the README holds the comparison, docs/ the seed reports), and each page is rewritten
only when a report changed what it holds, so pages without markers are never touched. A marker
whose report does not exist is left as it is; a report that no page has a marker for is named.
Run by `make readme`, from the repository root.

    python tools/readme.py            # in the repository root
    python tools/readme.py --root DIR
"""

import argparse
import re
from pathlib import Path


def pages(root):
    """The Markdown pages that may hold markers: README.md, then docs/*.md."""
    return [path for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if path.is_file()]


def reports(root):
    """``{marker name: report path}`` for every report there is."""
    found = {"comparison": root / "reports" / "comparison.md"}
    found.update({f"seeds:{path.stem}": path for path in sorted((root / "reports" / "seeds").glob("*.md"))})
    return {marker: path for marker, path in found.items() if path.is_file()}


def paste(text, marker, report):
    """``text`` with ``report`` between the start and end lines of ``marker``; and how many there were."""
    pattern = re.compile(rf"(<!-- {re.escape(marker)}:start -->\n).*?(<!-- {re.escape(marker)}:end -->)", re.S)
    return pattern.subn(lambda match: match[1] + report + match[2], text)


def paste_reports(root=Path(".")):
    """Paste every report into the pages holding its marker; returns the pages rewritten."""
    root = Path(root)
    texts = {page: page.read_text() for page in pages(root)}
    unplaced = []
    for marker, report_path in reports(root).items():
        report = report_path.read_text()
        placed = 0
        for page, text in texts.items():
            texts[page], count = paste(text, marker, report)
            placed += count
        if not placed:
            unplaced.append(f"{report_path.relative_to(root)} (no <!-- {marker}:start --> marker)")
    changed = []
    for page, text in texts.items():
        if text != page.read_text():
            page.write_text(text)
            changed.append(page)
    for page in changed:
        print(f"updated {page.relative_to(root)}")
    for line in unplaced:
        print(f"not pasted anywhere: {line}")
    return changed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: here)")
    paste_reports(parser.parse_args().root)


if __name__ == "__main__":
    main()
