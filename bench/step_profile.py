"""Benchmark: where a distillation step's time goes, from TensorFlow's profiler, against a plain step.

For the TA notebook's pair (batch 256), builds the same variants as ``bench/distill_step.py`` (a plain
student step, kd's step on cached logits for each logit loss, a plain step on jittered inputs and kd's
step on cached views of them), warms each up, then traces ``--steps`` steps of each with
``tf.profiler.experimental`` and reads the trace (its XSpace protobuf): every TensorFlow op the step
ran, by the name scope Keras gave it, summed into

- the student's forward ops, and its backward ops (``gradient_tape/.../<student>/...``);
- the loss and metrics: every other op of the step, and their gradients (the distillation terms'
  maths lives here, the hard-label loss and the accuracy too);
- the optimizer's update (``adam/...``);
- the augmentation: the jitter drawn, or the view's stored transformation replayed;
- the data: tf.data's reading of each batch's rows from disk (NumPy, on tf.data's own threads,
  overlapped with the step) and the time the step waited for its batch (``IteratorGetNext``).

Op times are summed over TensorFlow's threads (two ops can run at once), so they are CPU time in ops,
not wall time; the step's wall time is printed beside them. Beside them, the ops each step's graph
holds once Grappler (TensorFlow's graph optimizer, default passes) has folded and pruned it, for
this pair and for the keras.io example's (batch 64), whose plain step is small enough that each op's
scheduling shows: constants, identities and placeholders not counted. ``--record`` writes the
table, the commit and the machine to a JSON record.

    python bench/step_profile.py [--steps 50] [--record reports/bench/step_profile.json]
"""

import argparse
import collections
import glob
import re
import tempfile
import time
from pathlib import Path

import distill_step as bench  # the variants, built as the step bench builds them (bench/, beside this script)

import keras  # noqa: E402  (distill_step chose the backend and TensorFlow's threads)
import tensorflow as tf  # noqa: E402

VARIANTS = ("plain", "ours", "ours_standardize", "ours_dkd", "ours_dist", "plain_jitter", "ours_views")
CATEGORIES = ("student forward", "student backward", "loss and metrics", "optimizer", "augmentation",
              "reading rows (tf.data threads)", "waiting for the batch")


def category(scope, student):
    """The category of a traced op from its name scope (``StatefulPartitionedCall/<scope>``)."""
    parts = scope.split("/")
    if any(part.startswith("adam") for part in parts[:2]):
        return "optimizer"
    if any(part.startswith(("random_translation", "view_inputs")) or "Transform" in part for part in parts):
        return "augmentation"
    in_student = any(re.fullmatch(rf"{re.escape(student)}(_\d+)?", part) for part in parts)  # Keras numbers scopes
    if parts[0] == "gradient_tape":
        return "student backward" if in_student else "loss and metrics"
    return "student forward" if in_student else "loss and metrics"


def profile(model, data, steps, student, folder):
    """``{category: ms per step}`` and the step's wall ms, from a trace of ``steps`` steps of ``model``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)  # warm-up: tracing and compiling
    tf.profiler.experimental.start(str(folder))
    began = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    wall = (time.perf_counter() - began) / steps
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(glob.glob(f"{folder}/plugins/profile/*/*.xplane.pb")[0]).read_bytes())
    totals = collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if line.name.startswith("tf_Compute") and name.startswith("StatefulPartitionedCall/") and ":" in name:
                    totals[category(name.split("/", 1)[1].rsplit(":", 1)[0], student)] += event.duration_ps
                elif line.name.startswith("tf_data_private_threadpool") and name.startswith("PyFunc"):
                    totals["reading rows (tf.data threads)"] += event.duration_ps
                elif line.name.startswith("tf_data_iterator_get_next") and name == "IteratorGetNextOp::DoCompute":
                    totals["waiting for the batch"] += event.duration_ps
    return {name: round(totals[name] / 1e9 / steps, 3) for name in CATEGORIES}, round(1000 * wall, 2)


def graph_ops(model, data):
    """Ops in ``model``'s train step once Grappler has optimized its graph (constants, identities,
    placeholders and no-ops left out): what TensorFlow's executor schedules each step."""
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.grappler import tf_optimizer  # no public form: the bench's only private import

    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)  # builds the model and its optimizer
    function = tf.function(model.train_step).get_concrete_function(next(iter(data)))
    graph = function.graph
    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(add_shapes=True), graph=graph)
    fetches = [t.op.name for t in function.outputs] + [op.name for op in graph.get_operations()
                                                       if op.type.startswith("Assign")]
    meta.collection_def["train_op"].node_list.value.extend(fetches)  # what Grappler must keep
    optimized = tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta)
    return sum(node.op not in ("Const", "Identity", "NoOp", "Placeholder") for node in optimized.node)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="steps traced per variant (after as many of warm-up)")
    parser.add_argument("--record", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    make_teacher, make_student, _ = bench.seed002_models()
    x, y = bench.random_images(256 * 24)
    runs = bench.variants(make_teacher, make_student, {}, x, y, 256)
    print(f"machine: {bench.machine()['cpu']}, {bench.machine()['cores']} cores, {bench.THREADS} threads; "
          f"ms per step over {args.steps} traced steps")
    print(f"{'variant':18} {'wall':>7} " + " ".join(f"{name[:12]:>12}" for name in CATEGORIES))
    table = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in VARIANTS:
            model, data = runs[name]
            student = getattr(model, "student", model).name
            ms, wall = profile(model, data, args.steps, student, Path(scratch) / name)
            table[name] = {"wall_ms": wall, "op_ms": ms, "ops": graph_ops(model, data)}
            print(f"{name:18} {wall:7.2f} " + " ".join(f"{ms[c]:12.2f}" for c in CATEGORIES)
                  + f"  {table[name]['ops']} ops", flush=True)
    make_teacher, make_student, _ = bench.seed000_models()
    x, y = bench.random_images(64 * 24)
    runs = bench.variants(make_teacher, make_student, {}, x, y, 64)
    keras_io_ops = {name: graph_ops(*runs[name]) for name in VARIANTS}
    print("the keras.io pair's steps, ops:", keras_io_ops)
    if args.record:
        from kd.artifacts import write_json
        from kd.records import record

        figures = {"steps": args.steps, "threads": bench.THREADS, "batch_size": 256, "variants": table,
                   "keras_io_ops": keras_io_ops}
        write_json(args.record, record(figures, started, root=bench.ROOT, code=("bench", "src")))


if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    main()
