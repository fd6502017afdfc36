"""What a new user's pip installs for kd, resolved against the public index alone.

`make check-install`: for the pipeline's environment (kd's core) and the tests' (kd[test]),
pip resolves pyproject.toml under constraints.txt with no pip configuration, no local wheel
folder and no extra index, as on a fresh machine, and reports each environment's packages and
download size (from the index's own file sizes). Fails, in one line, when a pin carries a local
version label (`+cpu`: only its own index has it) or when the pinned set does not resolve there.
`--disk` also installs each environment into a temporary venv and measures it on disk.
Writes the figures, with the machine and commit, to reports/install.json.
"""

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

from kd.artifacts import write_json
from kd.errors import KdError, run_stage
from kd.records import record

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = {"core": ".", "test": ".[test]"}  # what `make repro` and `make test` install
PIP_SETTINGS = ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX",
                "PIP_REQUIRE_VIRTUALENV")


def public_pip_environment():
    """The environment of a pip that sees only the public index, whatever this machine configures."""
    env = {key: value for key, value in os.environ.items() if key not in PIP_SETTINGS}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def local_labels(constraints):
    """Pins with a local version label (`name==1.0+cpu`), which the public index never serves."""
    return [line.split("#")[0].strip() for line in constraints.read_text().splitlines()
            if re.match(r"^[A-Za-z0-9_.\-\[\]]+==[^#\s]*\+", line.strip())]


def resolve(python, spec, no_deps):
    """``[(name, version, url), ...]`` that pip would install for ``spec`` (kd itself left out)."""
    with tempfile.TemporaryDirectory() as folder:
        found = []
        for args in ([spec, "-c", str(ROOT / "constraints.txt")], ["--no-deps", *no_deps]):
            report = Path(folder) / "report.json"
            result = subprocess.run(
                [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
                 str(report), *args], cwd=ROOT, env=public_pip_environment(), capture_output=True, text=True)
            if result.returncode != 0:
                errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
                raise KdError(f"the pinned set does not resolve on the public index for {' '.join(args)}: "
                              f"{errors[0] if errors else result.stderr.strip().splitlines()[-1]}")
            for item in json.loads(report.read_text())["install"]:
                metadata = item["metadata"]
                if metadata["name"].lower() != "kd":
                    found.append((metadata["name"], metadata["version"], item["download_info"]["url"]))
        return found


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def download_size(url):
    request = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.headers["Content-Length"])


def disk_size(python, spec, no_deps):
    """MB on disk of a fresh venv holding ``spec``, installed from the public index."""
    with tempfile.TemporaryDirectory() as folder:
        venv = Path(folder) / "venv"
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        env = public_pip_environment()
        for args in ([spec, "-c", str(ROOT / "constraints.txt")], ["--no-deps", *no_deps]):
            result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args],
                                    cwd=ROOT, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise KdError(f"installing {' '.join(args)} from the public index failed: "
                              f"{result.stderr.strip().splitlines()[-1]}")
        total = sum(path.stat().st_size for path in venv.rglob("*") if path.is_file() and not path.is_symlink())
        return round(total / 1e6)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--disk", action="store_true", help="also install each environment and measure it on disk")
    parser.add_argument("--record", default=str(ROOT / "reports" / "install.json"))
    args = parser.parse_args(argv)
    started = time.perf_counter()

    labelled = local_labels(ROOT / "constraints.txt")
    if labelled:
        raise KdError(f"constraints.txt: {', '.join(labelled)} carries a local version label, which the public "
                      "index does not serve; pin the plain version (it also matches the labelled wheel)")
    no_deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["kd"]["no-deps"]
    figures = {}
    for name, spec in ENVIRONMENTS.items():
        packages = resolve(sys.executable, spec, no_deps)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            sizes = list(pool.map(download_size, [url for _, _, url in packages]))
        largest = sorted(zip(sizes, packages), reverse=True)[:8]
        pinned = {canonical(line.split("==")[0]) for line in (ROOT / "constraints.txt").read_text().splitlines()
                  if "==" in line and not line.startswith("#")}
        unpinned = sorted(f"{package}=={version}" for package, version, _ in packages
                          if canonical(package) not in pinned and f"{package}=={version}" not in no_deps)
        if unpinned:
            raise KdError(f"constraints.txt pins no version of {', '.join(unpinned)}, which kd{spec[1:]} installs "
                          "from the public index: add those lines, so every install is the tested one")
        figures[name] = {
            "packages": len(packages),
            "download_mb": round(sum(sizes) / 1e6),
            "largest": {f"{package}=={version}": round(size / 1e6) for size, (package, version, _) in largest},
            "has_jax": any(package == "jax" for package, _, _ in packages),
            "has_torch": any(package == "torch" for package, _, _ in packages),
        }
        if args.disk:
            figures[name]["disk_mb"] = disk_size(sys.executable, spec, no_deps)
        described = ", ".join(f"{package} {mb} MB" for package, mb in figures[name]["largest"].items())
        print(f"{name} (pip install -e '{spec}'): {len(packages)} packages, {figures[name]['download_mb']:,} MB "
              f"to download from the public index"
              + (f", {figures[name]['disk_mb']:,} MB on disk" if args.disk else "") + f"; largest: {described}")
    write_json(args.record, record(figures, started, command="python tools/check_install.py"
                                   + (" --disk" if args.disk else "")))
    print(f"every pin resolves on the public index; figures in {os.path.relpath(args.record)}")


if __name__ == "__main__":
    run_stage(main)
