"""`make plots`: the page of `dvc plots show`, made to open with no network.

DVC's page loads Vega, Vega-Lite and vega-embed from a CDN (dvc_render's ``VegaRenderer.SCRIPTS``,
pasted at the HTML template's ``{scripts}`` placeholder), so on an offline machine it opens blank.
This script

1. installs the three libraries, at the versions pinned below, from the npm registry into
   ``.kd-node/`` (git-ignored), once: later runs find them there and need no network;
2. writes ``.kd-node/plots_template.html``: ``tools/plots_template.html`` with the libraries'
   builds inlined. That template has no ``{scripts}`` placeholder, so DVC's CDN tags go nowhere;
3. runs ``dvc plots show --html-template .kd-node/plots_template.html -o <out>`` in the current
   directory, which writes ``<out>/index.html`` (and ``<out>/static/`` for image plots).

    python tools/plots_page.py                   # -> dvc_plots/index.html
    python tools/plots_page.py --out some/dir
    python tools/plots_page.py --install-only    # step 1 only (.ci/run, before the tests)
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / ".kd-node"
SKELETON = ROOT / "tools" / "plots_template.html"
TEMPLATE = NODE_DIR / "plots_template.html"
LIBRARIES_MARKER = "<!-- kd:libraries -->"

# Pinned, in load order (vega-lite needs vega; vega-embed needs both), with the UMD build of
# each that the page inlines. vega 6 and vega-lite 6 are ES modules only, hence the 5.x line.
LIBRARIES = {
    "vega": ("5.33.1", "build/vega.min.js"),
    "vega-lite": ("5.23.0", "build/vega-lite.min.js"),
    "vega-embed": ("6.29.0", "build/vega-embed.min.js"),
}


def installed_version(package):
    manifest = NODE_DIR / "node_modules" / package / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def install_libraries():
    """Install the pinned libraries into .kd-node/ unless they are there already."""
    missing = [f"{package}@{version}" for package, (version, _) in LIBRARIES.items()
               if installed_version(package) != version]
    if not missing:
        return
    if shutil.which("npm") is None:
        sys.exit("error: npm is not installed; the offline plots page needs it once to fetch "
                 f"{', '.join(missing)} (Debian: apt-get install nodejs npm)")
    print(f"installing {', '.join(missing)} from the npm registry into {NODE_DIR.relative_to(ROOT)}/")
    command = ["npm", "install", "--prefix", str(NODE_DIR), "--save-exact", "--no-audit", "--no-fund",
               "--loglevel=error", *[f"{package}@{version}" for package, (version, _) in LIBRARIES.items()]]
    result = subprocess.run(command, text=True, capture_output=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        sys.exit(f"error: npm install into {NODE_DIR} failed: {lines[-1] if lines else 'no output'}")


def inline_script(path):
    """A library's build as an inline <script> element.

    Its source-map comment goes (the page has no .map files to load), and the two character
    sequences that would end or confuse an HTML script element are escaped (both mean the same
    in JavaScript strings and regular expressions, where they can occur)."""
    code = path.read_text(encoding="utf8")
    code = re.sub(r"^//# sourceMappingURL=.*$", "", code, flags=re.M)
    code = re.sub(r"</(script)", r"<\\/\1", code, flags=re.I).replace("<!--", "<\\!--")
    return f'<script type="text/javascript">/* {path.relative_to(NODE_DIR)} */\n{code}\n</script>'


def write_template():
    """tools/plots_template.html with the libraries inlined, written to .kd-node/; its path."""
    skeleton = SKELETON.read_text(encoding="utf8")
    if LIBRARIES_MARKER not in skeleton or "{plot_divs}" not in skeleton:
        sys.exit(f"error: {SKELETON} must hold {LIBRARIES_MARKER} and {{plot_divs}}")
    scripts = "\n".join(inline_script(NODE_DIR / "node_modules" / package / build)
                        for package, (_, build) in LIBRARIES.items())
    page = skeleton.replace(LIBRARIES_MARKER, scripts)
    partial = TEMPLATE.with_name(TEMPLATE.name + ".partial")  # renamed into place: never half written
    partial.write_text(page, encoding="utf8")
    os.replace(partial, TEMPLATE)
    return TEMPLATE


def absent_plots(dvc_yaml=Path("dvc.yaml")):
    """The plot paths dvc.yaml defines that have no file or folder yet (e.g. plots/curves/terms/,
    written only when a model's loss has terms with parts): DVC warns about them."""
    import yaml  # the project's environment has it; --install-only does not need it

    entries = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("plots") or []
    paths = [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries]
    return [path for path in paths if not Path(path).exists()]


def show(template, out):
    """`dvc plots show` in the current directory, with the offline template, into ``out``."""
    dvc = [sys.executable, "-m", "dvc"]  # this Python's DVC, whatever PATH says
    result = subprocess.run([*dvc, "plots", "show", "--html-template", str(template), "-o", str(out)],
                            text=True, capture_output=True)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        sys.exit(f"error: dvc plots show failed (exit status {result.returncode})")
    absent = absent_plots()
    if absent and "failed to load some plots" in result.stderr:
        print(f"(DVC's line above is about {', '.join(absent)}: no data there yet; the page says so in its place)")
    print(f"wrote {Path(out) / 'index.html'}: Vega, Vega-Lite and vega-embed inlined, so it opens with no network")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="dvc_plots", help="folder for index.html (default: dvc_plots, DVC's own)")
    parser.add_argument("--install-only", action="store_true", help="install the libraries into .kd-node/ and stop")
    args = parser.parse_args()
    install_libraries()
    if not args.install_only:
        show(write_template(), args.out)


if __name__ == "__main__":
    main()
