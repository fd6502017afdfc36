"""dvc.yaml's kd dependencies, from each stage script's imports: `make deps` writes them.

A stage depends on its script and on every kd module the script reaches through imports, at
module level or inside functions, with the ``__init__`` of every package on the way; where a
stage reaches every module of a package, the package's folder is listed instead of its files
(DVC hashes a folder's files; .dvcignore keeps bytecode out). Editing a module then reruns
exactly the stages that can run it. tests/test_dvc_yaml.py fails when dvc.yaml is not what this
writes.

    python tools/stage_deps.py           # rewrite dvc.yaml's src/kd lines (make deps)
    python tools/stage_deps.py --check   # exit 1, naming the stages, when they differ
"""

import argparse
import ast
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def module_file(name):
    """The file of module ``kd.x.y`` (``src/kd/x/y.py`` or its package's ``__init__.py``), or None."""
    base = SRC / name.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_files(path):
    """The kd module files ``path`` imports anywhere in it, with the ``__init__`` of each package
    on the way (importing ``kd.losses.kinds`` runs ``kd/losses/__init__.py`` first)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "kd":
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.split(".")[0] == "kd")
    files = set()
    for name in names:
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            found = module_file(".".join(parts[:depth]))
            if found is not None:
                files.add(found)
    return files


def closure(script):
    """Every kd module file ``script`` (a path under the repository) reaches, as repository paths."""
    seen, todo = set(), [ROOT / script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(imported_files(path))
    return {path.relative_to(ROOT).as_posix() for path in seen - {ROOT / script}} | {"src/kd/__init__.py"}


def collapsed(files):
    """``files`` with each package all of whose modules are there listed as its folder."""
    result = set(files)
    for package in sorted({Path(f).parent for f in files if Path(f).parent != Path("src/kd")}, key=str):
        modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("*.py")}
        if modules <= result:
            result = (result - modules) | {package.as_posix()}
    return sorted(result, key=lambda f: (f != "src/kd/__init__.py", f))


def stage_scripts(text):
    """``{stage name: its script}`` for every stage of dvc.yaml's ``text``."""
    stages = yaml.safe_load(text)["stages"]
    return {name: next(part for part in stage.get("do", stage)["cmd"].split() if part.startswith("stages/"))
            for name, stage in stages.items()}


def flow_list(entries, indent, width=115):
    """``entries`` as a YAML flow sequence starting at column ``indent``, wrapped to ``width``: the
    first line opens with "[", the others (to be indented one column past it) hold the rest."""
    quoted = [f'"{entry}"' if any(c in entry for c in "${}:,#") else entry for entry in entries]
    lines = ["["]
    for position, entry in enumerate(quoted):
        piece = entry + ("," if position < len(quoted) - 1 else "]")
        if lines[-1] not in ("[", "") and indent + 1 + len(lines[-1]) + 1 + len(piece) > width:
            lines.append("")
        lines[-1] += ("" if lines[-1] in ("[", "") else " ") + piece
    return lines


def rewritten(text):
    """dvc.yaml's ``text`` with each stage's ``deps: [...]`` holding its script's kd modules."""
    scripts = stage_scripts(text)
    lines, out, stage, index = text.split("\n"), [], None, 0
    while index < len(lines):
        line = lines[index]
        match = re.match(r"^  ([A-Za-z_][\w-]*):\s*$", line)
        if match and match[1] in scripts:
            stage = match[1]
        deps = re.match(r"^(\s+)deps: \[", line)
        if not (deps and stage is not None):
            out.append(line)
            index += 1
            continue
        end = index  # the flow sequence may span lines: up to the one holding its "]"
        while "]" not in lines[end].split("#")[0]:
            end += 1
        body = " ".join(part.split("#")[0] if n < end - index else part for n, part in enumerate(lines[index:end + 1]))
        inside, _, after = body[body.index("[") + 1:].partition("]")
        entries = [e.strip().strip('"') for e in inside.split(",") if e.strip()]
        kept = [e for e in entries if not e.startswith("src/")]
        prefix = f"{deps[1]}deps: "
        wrapped = flow_list(kept + collapsed(closure(scripts[stage])), len(prefix))
        wrapped[-1] += after.rstrip()
        out += [prefix + wrapped[0], *(" " * (len(prefix) + 1) + rest for rest in wrapped[1:])]
        index = end + 1
    return "\n".join(out)


def listed(text):
    """``{stage name: the src/kd entries of its deps}`` as dvc.yaml's ``text`` has them."""
    stages = yaml.safe_load(text)["stages"]
    return {name: sorted(d for d in stage.get("do", stage)["deps"] if isinstance(d, str) and d.startswith("src/"))
            for name, stage in stages.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether dvc.yaml is up to date")
    args = parser.parse_args(argv)
    path = ROOT / "dvc.yaml"
    text = path.read_text()
    new = rewritten(text)
    if args.check:
        have, want = listed(text), listed(new)
        stale = [name for name in want if have[name] != want[name]]
        if stale:
            sys.exit(f"error: dvc.yaml's kd dependencies are not what the stages import for {', '.join(stale)}: "
                     "run make deps")
        print("dvc.yaml's kd dependencies are what the stages import")
    elif new != text:
        path.write_text(new)
        print("dvc.yaml: kd dependencies rewritten")


if __name__ == "__main__":
    main()
