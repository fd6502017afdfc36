"""Stage peer: publish one peer of a mutual group as a model like any other.

Copies mutual/<group>/<peer>.keras, .npy and curves/<peer>/ to models/<peer>.keras,
logits/<peer>.npy and dvclive/<peer>/, so the peer can teach (`teacher: <peer>`), be exported
and be compared through the same templated stages as every model. Bytes are copied as they are.
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # the stage's wall time, imports included
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this tree's kd (docs/layout.md: The pipeline)

from kd.errors import ArtifactError, ParamsError, run_stage  # noqa: E402
from kd.params import load_params  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("peer", help="a key of peers: in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--mutual", default="mutual", help="folder of the groups' outputs")
    parser.add_argument("--models", default="models")
    parser.add_argument("--logits", default="logits")
    parser.add_argument("--curves", default="dvclive")
    parser.add_argument("--timings", default="timings", help="folder for <stage>.json with the wall time")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    spec = params.model(args.peer)
    if spec.mutual is None:
        raise ParamsError(f"model {spec.name!r} is not a peer of a mutual group (it is made by stage {spec.stage})")
    from kd.artifacts import atomic_directory, atomic_path
    from kd.provenance import write_timing

    folder = Path(args.mutual) / spec.mutual.name
    sources = {folder / f"{spec.name}.keras": Path(args.models) / f"{spec.name}.keras",
               folder / f"{spec.name}.npy": Path(args.logits) / f"{spec.name}.npy"}
    for source in [*sources, folder / "curves" / spec.name]:
        if not source.exists():
            raise ArtifactError(f"{source} is missing; run the group's stage (dvc repro {spec.mutual.stage})")
    for source, target in sources.items():
        with atomic_path(target) as temporary:
            shutil.copyfile(source, temporary)
    with atomic_directory(Path(args.curves) / spec.name) as temporary:
        shutil.copytree(folder / "curves" / spec.name, temporary)
    print(f"{spec.name}: published from {folder}/")
    write_timing(Path(args.timings) / f"{spec.stage}.json", STARTED)


if __name__ == "__main__":
    run_stage(main)
