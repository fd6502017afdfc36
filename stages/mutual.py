"""Stage mutual: train the peers of one mutual: group together (deep mutual learning).

Writes mutual/<group>/: each peer's model (<peer>.keras), its logits on the training split
(<peer>.npy) and its curves (curves/<peer>/); stage peer@<peer> publishes them as the peer's
models/, logits/ and dvclive/ entries, so a peer is a model like any other. See kd.mutual.
"""

import argparse
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # the stage's wall time, imports included
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this tree's kd (docs/layout.md: The pipeline)

from kd.errors import ParamsError, run_stage  # noqa: E402
from kd.params import load_params  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("group", help="a key of mutual: in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", default="data", help="folder with the train/ and validation/ splits")
    parser.add_argument("--out", default="mutual", help="folder for <group>/")
    parser.add_argument("--timings", default="timings", help="folder for <stage>.json with the wall time")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    if args.group not in params.mutual:
        raise ParamsError(f"no mutual group named {args.group!r} in params.yaml; groups are: "
                          f"{', '.join(params.mutual) or 'none'}")
    group = params.mutual[args.group]
    specs = [params.model(name) for name in group.peers]
    from kd.devices import use_backend

    use_backend(specs[0].backend, f"mutual.{group.name}.backend")  # before Keras is imported
    from kd.artifacts import atomic_directory, save_model, write_json
    from kd.batches import write_logits
    from kd.data import load_split
    from kd.models import check_models, float32_copy
    from kd.mutual import fit_group
    from kd.provenance import write_timing
    from kd.devices import training_scope
    from kd.seeding import seed_everything

    train, validation = load_split(Path(args.data) / "train"), load_split(Path(args.data) / "validation")
    check_models(params, train.image_shape, train.num_classes)  # every model, before any work
    print(f"mutual@{group.name}: peers {', '.join(group.peers)} learn together (T={group.temperature}, "
          f"soft_target_weight={group.soft_target_weight}, loss "
          + " + ".join((f"{w:g}·" if w != 1 else "") + repr(term) for term, w in group.loss) + ")")
    seed_everything(params.seed)
    with atomic_directory(Path(args.out) / group.name) as folder:  # every peer's files, or none
        folder.mkdir(parents=True)
        with training_scope(specs[0]) as setup:
            peers = fit_group(group, specs, train, validation, params.seed,
                              curves={name: folder / "curves" / name for name in group.peers})
        for spec, peer in zip(specs, peers, strict=True):
            peer = float32_copy(peer, spec)
            save_model(peer, folder / f"{spec.name}.keras")
            write_logits(peer, train.images, folder / f"{spec.name}.npy")
            write_json(folder / "curves" / spec.name / "training.json", setup)
    write_timing(Path(args.timings) / f"{group.stage}.json", STARTED)


if __name__ == "__main__":
    run_stage(main)
