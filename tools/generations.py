"""Expand born-again generations in params.yaml: `make generations`.

A distilled model that asks for ``generations: k`` (Furlanello et al., ICML 2018: a network
retrained from its own predictions, generation after generation) becomes a chain of k models of
its architecture, ``<name>_g1`` … ``<name>_gk``, each taught by the one before and the first by the
model's ``teacher``; with ``ensemble: true`` the last learns from all earlier generations at once
(kd's ``teachers:``). DVC makes one stage per params entry and cannot make k from one, so the
chain is written into params.yaml as k entries, where the DAG follows from it as the TA chain's
does; comments and the rest of the file are kept. Until then every stage refuses the entry,
pointing here.

    python tools/generations.py [--params params.yaml]
"""

import argparse
from pathlib import Path


from kd.errors import run_stage  # noqa: E402
from kd.params import expand_generations  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    path = Path(args.params)
    yaml = YAML()  # round-trip: comments, order and layout kept, as params.yaml writes them
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(type(None), lambda dumper, _: dumper.represent_scalar("tag:yaml.org,2002:null",
                                                                                             "null"))
    document = yaml.load(path.read_text())
    distill = document.get("distill") or {}
    expanded = expand_generations({name: dict(entry) for name, entry in distill.items()}, section="distill")
    if list(expanded) == list(distill):
        print(f"{path}: no model asks for generations")
        return
    for name in list(distill):
        if "generations" in distill[name]:
            position = list(distill).index(name)
            del distill[name]
            chain = [generation for generation in expanded if generation.startswith(f"{name}_g")]
            for offset, generation in enumerate(chain):
                entry = CommentedMap(expanded[generation])
                entry.fa.set_flow_style()  # one line per generation, as the file's other entries
                distill.insert(position + offset, generation, entry)
            print(f"{path}: distill.{name} → {', '.join(chain)}")
    with open(path, "w") as file:
        yaml.dump(document, file)


if __name__ == "__main__":
    run_stage(main)
