"""Paste the reports written by runs into README.md, between their markers.

``<!-- comparison:start -->`` … ``<!-- comparison:end -->`` gets reports/comparison.md (the
last `dvc repro`); ``<!-- seeds:<config>:start -->`` … ``<!-- seeds:<config>:end -->`` gets
reports/seeds/<config>.md (the last `make seeds CONFIG=<config>`). A marker whose report does
not exist is left as it is. Run by `make readme`.
"""

import re
from pathlib import Path

README = Path("README.md")


def main():
    text = README.read_text()
    reports = {"comparison": Path("reports/comparison.md")}
    reports.update({f"seeds:{path.stem}": path for path in sorted(Path("reports/seeds").glob("*.md"))})
    for marker, path in reports.items():
        if not path.is_file():
            continue
        pattern = re.compile(rf"(<!-- {re.escape(marker)}:start -->\n).*?(<!-- {re.escape(marker)}:end -->)", re.S)
        text = pattern.sub(lambda match: match[1] + path.read_text() + match[2], text)
    README.write_text(text)


if __name__ == "__main__":
    main()
