"""Benchmark: seconds per training step of distillation variants, each as a ratio to a like-for-like step.

For two model pairs — seed 002's (conv teacher -> fully connected student, batch 256) and
seed 000's (conv 256/512 teacher -> conv 16/32 student, batch 64) — times, in one process:

- plain:           the student alone, Keras's own compiled step on hard labels;
- ours:            kd's distillation step, Hinton's loss (teacher logits precomputed, fed
                   beside the labels); ours_again: a second, identical instance of it (the
                   bench's resolution); ours_standardize, ours_dkd, ours_dist: the other
                   logit losses on the same cached path;
- ours_online:     kd's step with the teacher run on every batch (what it does for augmented
                   inputs), without augmentation: the same work as keras_io;
- ours_online_jitter: the same plus the ±2 px RandomTranslation of params.yaml's `jitter`,
                   applied once per batch and seen by teacher and student alike;
- ours_hint, ours_attention: the feature losses, which read the teacher's layers and so
                   run it on every batch (attention needs conv maps in both models: seed 000's
                   pair only);
- plain_jitter:    kd's step for a model on labels alone with the `jitter` augmentation: the
                   reference for the next row;
- ours_views:      kd's step for a student on views (views of `jitter`, the teacher's logits
                   cached): the view rebuilt from its stored transformation, no teacher run;
- keras_io:        seed 000's keras.io ``Distiller``, ported to Keras 3 (teacher forward every step);
- keras_distiller: ``keras.distillation.Distiller`` with ``LogitsDistillation(loss=KLDivergence())``.

Then RKD (section ``rkd``): its step, with the teacher online, against a plain step at batch
sizes 32 to 256 on the TA notebook's pair: its angle term compares every triple of the batch's
vectors, B³·D multiply-adds; and with ``angle_triplets: 16384`` (N·D).

Then the teacher's and the student's plain step (seed 002's models, batch 256) in float32 and in
mixed_bfloat16 (opt-in: what it costs or buys depends on the CPU's bfloat16 hardware); and where the teacher's time goes
around its step: a bare compiled step, Keras `fit` with its per-batch progress bar (`verbose=2`,
which fetches every batch's logs before dispatching the next), and `fit` as kd runs it (one log
line per epoch, so batches are dispatched without waiting).

Then the data path (seed 002's pair, batch 256, 54,000 uint8 MNIST-sized images): the teacher's
plain step and kd's distillation step fed from a split on disk (kd's streaming path) and from the
same images held in memory as one float32 tensor (how kd fed them before streaming).

Then the views stage's forward pass (section ``views``): the TA notebook's teacher, its dense layer
cached too, on blocks of images, called op by op (eager) and through Keras's compiled predict.

Variants are timed in rounds, round-robin, after a warm-up: each round times a block of steps of
every variant in turn, forwards and backwards by turns. On TensorFlow a step is one call of the
model's compiled train function (what ``fit`` calls per batch, without fit's own loop), and in the
pairs a block is a single step, or as many cheap steps as fill about 10 ms: rounds are short and
many (``--seconds`` a pair), so every variant samples the same moments of the machine. On these
shared 2-core machines a step's time jumps between levels from one moment to the next (the
machine's scheduling, not the method). ``ours_again``, a second instance of ``ours``, shows in
each run how far apart two identical variants' ratios come out: the bench's resolution. Under JAX
and PyTorch a block is Keras's ``fit`` for up to 22 steps (their train functions take the backend's
state), timed from its batch callbacks. A variant's time is the 25th percentile of its steps (below
the slow level, and not set by a few lucky steps), a ratio is that of two such times, and the spread
printed beside it is the lowest and highest ratio over tenths of the run. A pair row's ratio is to
the step that does the same work but the row's method (REFERENCES: a plain step, a plain step on
jittered inputs, or Keras's Distiller for a teacher run on every batch), so that a change in the
machine's speed level cancels; two rows, the PRICES, compare unlike work and follow that level.
Each step is timed twice: wall time, and the process's CPU time (all its threads: the work the
step does, without the time it waited for a core). The CPU ratio is the one that holds between runs: when the machine as a whole
runs slower for a while, a compute-heavy step (a conv teacher run online) loses more wall time than
a small overhead-bound one, and the wall ratios between them move. TensorFlow's thread pools are
fixed (``KD_BENCH_THREADS``, default the core count). Prints a table and, as its last line, one JSON
object of the ratios; ``--record`` also writes them, with the commit and machine, as a
JSON record.

    python bench/distill_step.py [--rounds 15] [--steps 10] [--seconds 120] [--only pairs rkd precision fit data views]
                                 [--record reports/bench/distill_step.json]
    KERAS_BACKEND=jax python bench/distill_step.py --only pairs precision    # the same rows on JAX

Under JAX or PyTorch (KERAS_BACKEND) the rows that are TensorFlow's own are left out: keras_io
(seed 000's Distiller, written with tf.GradientTape), the bare tf.function step and the
in-memory tf.data reference.
"""

import argparse
import contextlib
import os
import dataclasses
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from kd.devices import use_backend  # noqa: E402

use_backend(os.environ.get("KERAS_BACKEND", "tensorflow"), "KERAS_BACKEND")
import keras  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

BACKEND = keras.backend.backend()
THREADS = int(os.environ.get("KD_BENCH_THREADS", os.cpu_count()))
if BACKEND == "tensorflow":
    import tensorflow as tf  # noqa: E402

    # Fixed before TensorFlow starts its runtime: thread pools sized by load or by guess change the timings.
    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    # Each train function is traced once more for the bench's own iterator (fit_steps), which
    # TensorFlow reports as excessive retracing once a few models have done so.
    tf.get_logger().setLevel("ERROR")

from kd.batches import training_batches  # noqa: E402
from kd.data import save_split  # noqa: E402
from kd.losses.kinds import parse_loss  # noqa: E402
from kd.losses.objective import Objective  # noqa: E402
from kd.params import load_params  # noqa: E402
from kd.models import build_augmentation, build_model  # noqa: E402
from kd.inspection import feature_layers  # noqa: E402
from kd.teachers import Teachers  # noqa: E402
from kd.training import DistillationTrainer  # noqa: E402

TEMPERATURE, SOFT_TARGET_WEIGHT = 4.0, 0.5
SAMPLED_TRIPLETS = 16384  # RKD's angle_triplets in the sampled rows (docs/losses.md states its tolerance)
SCRATCH = tempfile.TemporaryDirectory(prefix="kd-bench-")  # the splits the variants read, removed at exit
AUGMENTATION = tuple(yaml.safe_load((ROOT / "params.yaml").read_text())["augmentations"]["jitter"])


def machine():
    """The CPU model and core count, printed beside every timing."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown") if Path("/proc/cpuinfo").is_file() else "unknown"
    return {"cpu": cpu, "cores": os.cpu_count()}


class KerasIoDistiller(keras.Model):
    """Seed 000's keras.io Distiller, ported to Keras 3 (own metric trackers, optimizer.apply)."""

    def __init__(self, student, teacher):
        super().__init__()
        self.teacher, self.student = teacher, student
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def compile(self, optimizer, student_loss_fn, distillation_loss_fn, alpha, temperature):
        super().compile(optimizer=optimizer)
        self.student_loss_fn, self.distillation_loss_fn = student_loss_fn, distillation_loss_fn
        self.alpha, self.temperature = alpha, temperature

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy]

    def call(self, x, training=False):
        return self.student(x, training=training)

    def train_step(self, data):
        x, y = data
        teacher_predictions = self.teacher(x, training=False)
        with tf.GradientTape() as tape:
            student_predictions = self.student(x, training=True)
            student_loss = self.student_loss_fn(y, student_predictions)
            distillation_loss = self.distillation_loss_fn(
                tf.nn.softmax(teacher_predictions / self.temperature, axis=1),
                tf.nn.softmax(student_predictions / self.temperature, axis=1),
            ) * self.temperature**2
            loss = self.alpha * student_loss + (1 - self.alpha) * distillation_loss
        variables = self.student.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        self.loss_tracker.update_state(loss)
        self.accuracy.update_state(y, student_predictions)
        return {m.name: m.result() for m in self.metrics}


def seed000_models():
    def conv(filters_1, filters_2, name):
        return keras.Sequential(
            [
                keras.Input(shape=(28, 28, 1)),
                keras.layers.Conv2D(filters_1, (3, 3), strides=(2, 2), padding="same", name="conv1"),
                keras.layers.LeakyReLU(negative_slope=0.2),
                keras.layers.MaxPooling2D(pool_size=(2, 2), strides=(1, 1), padding="same"),
                keras.layers.Conv2D(filters_2, (3, 3), strides=(2, 2), padding="same", name="conv2"),
                keras.layers.Flatten(name="features"),
                keras.layers.Dense(10),
            ],
            name=name,
        )

    # Layers the feature losses compare: (student, teacher) per loss; None where a pair has none.
    layers = {"hint": ("conv2", "conv2"), "attention": (["conv1", "conv2"], ["conv1", "conv2"]),
              "rkd": ("features", "features")}
    return (lambda: conv(256, 512, "teacher")), (lambda: conv(16, 32, "student")), layers


def seed002_models():
    params = load_params(ROOT / "params.yaml")
    layers = {"hint": ("dense_1", "dense"), "attention": None, "rkd": ("dense_1", "dense")}
    return (
        lambda: build_model(params.model("teacher"), (28, 28, 1), 10),
        lambda: build_model(params.model("student"), (28, 28, 1), 10),
        layers,
    )


def variants(make_teacher, make_student, feature_layers_of, x, y, batch_size):
    """``{name: (compiled model, infinite dataset)}``, each with a fresh student, same seed."""
    keras.utils.set_random_seed(0)  # the same teacher weights every run: runs compare like for like
    teacher = make_teacher()
    teacher_logits = teacher.predict(x, batch_size=1024, verbose=0)
    scce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def fresh_student():
        keras.utils.set_random_seed(0)
        return make_student()

    plain = fresh_student()
    plain.compile(optimizer=keras.optimizers.Adam(1e-3), loss=scce, metrics=["accuracy"])

    def ours(loss="hinton", online=False, augment=None):
        terms = parse_loss(loss, "bench", TEMPERATURE)
        objective = Objective(terms, SOFT_TARGET_WEIGHT, {"teacher": 1.0})
        teachers = (Teachers(["teacher"], models=[feature_layers(teacher, objective.teacher_layers, "bench", "teacher")])
                    if online else Teachers(["teacher"], logits=[teacher_logits]))
        trainer = DistillationTrainer(fresh_student(), objective, teachers, augment=augment)
        trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
        return trainer

    jitter = load_params(ROOT / "params.yaml").model("student")
    jitter = dataclasses.replace(jitter, augmentation=AUGMENTATION)
    split = split_of(x, y)
    hard = stream(split, batch_size)
    soft = stream(split, batch_size, [teacher_logits])
    runs = {
        "plain": (plain, hard),
        "ours": (ours(), soft),
        "ours_again": (ours(), soft),  # the same as ours: how far apart identical variants come out
        "ours_standardize": (ours({"kind": "hinton", "standardize": True}), soft),
        "ours_dkd": (ours("dkd"), soft),
        "ours_dist": (ours("dist"), soft),
        "ours_online": (ours(online=True), hard),
        "ours_online_jitter": (ours(online=True, augment=build_augmentation(jitter, x.shape[1:], seed=0)), hard),
    }
    for kind, pair in feature_layers_of.items():
        if pair is not None and kind != "rkd":  # RKD's cost grows with the batch: its own section
            loss = {"kind": kind, "student_layer": pair[0], "teacher_layer": pair[1]}
            runs[f"ours_{kind}"] = (ours(loss, online=True), hard)

    if BACKEND == "tensorflow":  # written with tf.GradientTape, as keras.io has it
        keras_io = KerasIoDistiller(fresh_student(), teacher)
        keras_io.compile(keras.optimizers.Adam(1e-3), scce, keras.losses.KLDivergence(),
                         alpha=1 - SOFT_TARGET_WEIGHT, temperature=TEMPERATURE)
        runs.update(keras_io=(keras_io, hard))

    keras_distiller = keras.distillation.Distiller(
        teacher=teacher,
        student=fresh_student(),
        distillation_losses=keras.distillation.LogitsDistillation(
            temperature=TEMPERATURE, loss=keras.losses.KLDivergence()
        ),
        student_loss_weight=1 - SOFT_TARGET_WEIGHT,
    )
    keras_distiller.compile(optimizer=keras.optimizers.Adam(1e-3), loss=scce)

    runs.update(keras_distiller=(keras_distiller, hard))
    runs.update(views_variants(teacher, fresh_student, split, batch_size, jitter))
    return runs


def views_variants(teacher, fresh_student, split, batch_size, jitter):
    """plain_jitter and ours_views: the same jittered inputs, labels alone vs the teacher's cached views."""
    from kd.artifacts import save_model
    from kd.params import ViewsSpec
    from kd.views import ViewInputs, Views, compute_views

    scratch = Path(SCRATCH.name) / f"views{len(list(Path(SCRATCH.name).iterdir()))}"
    (scratch / "views").mkdir(parents=True)
    save_model(teacher, scratch / "teacher.keras")
    views = ViewsSpec("bench", "teacher", "jitter", AUGMENTATION, count=2)
    compute_views(views, teacher, split, scratch / "views", 0, scratch / "teacher.keras")
    reader = Views(views, scratch / "views", split, 0, scratch / "teacher.keras")
    terms = parse_loss("hinton", "bench", TEMPERATURE)
    objective = Objective(terms, SOFT_TARGET_WEIGHT, {"teacher": 1.0})
    student = DistillationTrainer(fresh_student(), objective, Teachers(["teacher"], views=reader),
                                  view_inputs=ViewInputs(views, split.image_shape, 0))
    student.compile(optimizer=keras.optimizers.Adam(1e-3))
    plain = DistillationTrainer(fresh_student(), augment=build_augmentation(jitter, split.image_shape, seed=0))
    plain.compile(optimizer=keras.optimizers.Adam(1e-3))
    return {
        "plain_jitter": (plain, stream(split, batch_size)),
        "ours_views": (student, training_batches(split, batch_size=batch_size, shuffle_seed=0, views=reader,
                                                 epochs=10_000)),
    }


def stream(split, batch_size, columns=()):
    """Batches for timed blocks: tf.data repeated on TensorFlow; a PyDataset (one pass is 24 batches,
    more than a block) elsewhere."""
    batches = training_batches(split, columns, batch_size=batch_size, shuffle_seed=0)
    return batches.repeat() if BACKEND == "tensorflow" else batches


def time_pair(make_teacher, make_student, feature_layers_of, batch_size, rounds, steps, seconds):
    x, y = random_images(batch_size * 24)
    runs = variants(make_teacher, make_student, feature_layers_of, x, y, batch_size)
    runs = {name: fit_steps(model, data, steps, shuffle=False) for name, (model, data) in runs.items()}
    if BACKEND == "tensorflow":
        # Blocks of a step or a few (about 10 ms), many rounds: every variant's steps sample the same
        # moments of the machine, which on a shared machine jumps between speed levels within seconds.
        return round_robin(runs, rounds, 1, block_seconds=0.01, most_steps=8, seconds=seconds)
    # A block of the slowest variant (an online teacher) lasts about 0.3 s: every variant's fills as much.
    # Off TensorFlow a block reads one pass of a 24-batch PyDataset at most.
    return round_robin(runs, rounds, steps, block_seconds=0.3, most_steps=22)


def time_rkd(rounds, steps, batch_sizes=(32, 64, 128, 256)):
    """ms per step of the TA notebook's student with RKD (teacher online) and alone, per batch size."""
    make_teacher, make_student, layers = seed002_models()
    keras.utils.set_random_seed(0)
    teacher = make_teacher()
    scce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    loss = {"kind": "rkd", "student_layer": layers["rkd"][0], "teacher_layer": layers["rkd"][1]}
    runs = {}
    for batch_size in batch_sizes:
        x, y = random_images(batch_size * 8)
        data = stream(split_of(x, y), batch_size)
        keras.utils.set_random_seed(0)
        plain = make_student()
        plain.compile(optimizer=keras.optimizers.Adam(1e-3), loss=scce)
        objective = Objective(parse_loss(loss, "bench", TEMPERATURE), SOFT_TARGET_WEIGHT, {"teacher": 1.0})
        keras.utils.set_random_seed(0)
        rkd = DistillationTrainer(make_student(), objective, Teachers(
            ["teacher"], models=[feature_layers(teacher, objective.teacher_layers, "bench", "teacher")]))
        rkd.compile(optimizer=keras.optimizers.Adam(1e-3))
        sampled_loss = {**loss, "angle_triplets": SAMPLED_TRIPLETS}
        objective = Objective(parse_loss(sampled_loss, "bench", TEMPERATURE), SOFT_TARGET_WEIGHT, {"teacher": 1.0})
        keras.utils.set_random_seed(0)
        sampled = DistillationTrainer(make_student(), objective, Teachers(
            ["teacher"], models=[feature_layers(teacher, objective.teacher_layers, "bench", "teacher")]))
        sampled.compile(optimizer=keras.optimizers.Adam(1e-3))
        runs[(batch_size, "plain")] = fit_steps(plain, data, steps)
        runs[(batch_size, "ours_rkd")] = fit_steps(rkd, data, steps)
        runs[(batch_size, "ours_rkd_sampled")] = fit_steps(sampled, data, steps)
    return round_robin(runs, rounds, steps)


def time_precisions(rounds, steps):
    """ms per plain training step of seed 002's teacher and student in each precision, round-robin."""
    params = load_params(ROOT / "params.yaml")
    data = stream(split_of(*random_images(256 * 24)), 256)
    runs = {}
    for name in ("teacher", "student"):
        for policy in ("float32", "mixed_bfloat16"):
            keras.config.set_dtype_policy(policy)
            runs[(name, policy)] = fit_steps(plain_model(params, name), data, steps)
    keras.config.set_dtype_policy("float32")
    return round_robin(runs, rounds, steps)


def time_fit_overhead(rounds, steps):
    """ms per teacher step: a bare tf.function step, fit(verbose=2), and fit as kd runs it."""
    from kd.training import EpochLog

    params = load_params(ROOT / "params.yaml")
    data = training_batches(split_of(*random_images(256 * 8)), batch_size=256, shuffle_seed=0).repeat()
    teacher = plain_model(params, "teacher")
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(teacher.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def bare_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, teacher(xb, training=True))
        optimizer.apply(tape.gradient(loss, teacher.trainable_variables), teacher.trainable_variables)
        return loss

    batch_list = list(data.take(steps))

    def bare():
        for xb, yb in batch_list:
            bare_step(xb, yb)
        bare_step(*batch_list[0]).numpy()  # wait for the last step

    class Quiet(EpochLog):  # kd's epoch log (its per-batch clock check included) without the epoch lines
        def on_epoch_begin(self, epoch, logs=None):
            self.started = self.last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            pass

    def quietly(run):  # fit(verbose=2) prints a line per batch: time it, do not show it
        def quiet_run():
            with contextlib.redirect_stdout(io.StringIO()):
                run()
        return quiet_run

    return round_robin({
        "bare tf.function step": quietly(bare),
        "fit, verbose=2": quietly(lambda: teacher.fit(data, epochs=1, steps_per_epoch=steps, verbose=2)),
        "fit as kd runs it": quietly(lambda: teacher.fit(data, epochs=1, steps_per_epoch=steps, verbose=0,
                                                         callbacks=[Quiet(256)])),
    }, rounds, steps)


def time_data_path(rounds, steps):
    """ms per step of the teacher's plain step and kd's distillation step (seed 002's pair, batch 256),
    fed from a split on disk (kd's path) and from the same images in memory (the reference)."""
    rng = np.random.default_rng(0)
    pixels, labels = rng.integers(0, 256, (54000, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 54000)
    split = split_of(pixels, labels)
    logits = rng.normal(size=(54000, 10)).astype(np.float32)
    params = load_params(ROOT / "params.yaml")

    def in_memory(*targets):  # kd's feed before streaming: a float32 constant, gathered per shuffled batch
        tensors = [tf.constant(pixels.astype(np.float32) / 255.0)] + [tf.constant(t) for t in targets]

        def gather(index):
            x_batch, *rest = (tf.gather(t, index) for t in tensors)
            return x_batch, (rest[0] if len(rest) == 1 else tuple(rest))

        return (tf.data.Dataset.range(54000).shuffle(54000, seed=0, reshuffle_each_iteration=True).batch(256)
                .map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE).repeat())

    def distiller():
        keras.utils.set_random_seed(0)
        objective = Objective(parse_loss("hinton", "bench", TEMPERATURE), SOFT_TARGET_WEIGHT, {"teacher": 1.0})
        trainer = DistillationTrainer(build_model(params.model("student"), (28, 28, 1), 10), objective,
                                      Teachers(["teacher"], logits=[logits]))
        trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
        return trainer

    teacher_streamed, teacher_in_memory = plain_model(params, "teacher"), plain_model(params, "teacher")
    student_streamed, student_in_memory = distiller(), distiller()
    return round_robin({
        "teacher, streamed": fit_steps(teacher_streamed, training_batches(split, batch_size=256, shuffle_seed=0).repeat(),
                                       steps),
        "teacher, in memory": fit_steps(teacher_in_memory, in_memory(labels), steps),
        "student kd, streamed": fit_steps(student_streamed, training_batches(split, [logits], batch_size=256,
                                                                             shuffle_seed=0).repeat(), steps),
        "student kd, in memory": fit_steps(student_in_memory, in_memory(labels, logits), steps),
    }, rounds, steps)


def split_of(x, y):
    """``x`` and ``y`` written as a split in the bench's scratch folder, opened for reading."""
    folder = Path(SCRATCH.name) / f"split{len(list(Path(SCRATCH.name).iterdir()))}"
    return save_split(folder, x, y, int(np.max(y)) + 1)


def random_images(count):
    """``count`` seeded random MNIST-shaped images and labels: step timings do not depend on the values."""
    rng = np.random.default_rng(0)
    return rng.random((count, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, size=count)


def plain_model(params, name):
    """Model ``name`` of params.yaml, compiled for plain training on hard labels (current dtype policy)."""
    keras.utils.set_random_seed(0)
    model = build_model(params.model(name), (28, 28, 1), 10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class StepTimes(keras.callbacks.Callback):
    """Each training step's wall and CPU seconds, from the batch callbacks around it."""

    def __init__(self):
        super().__init__()
        self.wall, self.cpu = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self.started = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, batch, logs=None):
        self.wall.append(time.perf_counter() - self.started[0])
        self.cpu.append(time.process_time() - self.started[1])


def fit_steps(model, data, steps, **options):
    """A callable that trains ``model`` for ``steps`` steps of ``data`` (or as many as it is asked
    for) and returns each step's wall and CPU seconds.

    On TensorFlow each step is one call of the model's compiled train function (what Keras's ``fit``
    calls for each batch) on an iterator that lives as long as the callable, so a block may be a
    single step and variants interleave step by step. Elsewhere a block is Keras's own ``fit`` (its
    train function takes the backend's state), less its first step, which carries the call's set-up.
    """
    if BACKEND == "tensorflow":
        model.fit(data, epochs=1, steps_per_epoch=2, verbose=0, **options)  # builds the train function
        iterator = iter(data)

        def step_by_step(count=steps):
            wall, cpu = [], []
            for _ in range(count):
                started = time.perf_counter(), time.process_time()
                model.train_function(iterator)  # on the CPU, returns once the step is done
                wall.append(time.perf_counter() - started[0])
                cpu.append(time.process_time() - started[1])
            return wall, cpu
        return step_by_step

    def run(count=steps):
        timer = StepTimes()
        model.fit(data, epochs=1, steps_per_epoch=count + 1, verbose=0, callbacks=[timer], **options)
        return timer.wall[1:], timer.cpu[1:]
    return run


def percentile(values, share):
    values = sorted(values)
    return values[int(round(share * (len(values) - 1)))]


class Timing:
    """One variant's steps, round by round: wall and CPU seconds of each."""

    def __init__(self):
        self.wall, self.cpu = [], []  # one list of step times per round

    # The 25th percentile of a variant's steps: below the slow level the machine drops to at times,
    # and, unlike the fastest step or the 10th percentile, not set by a few lucky steps (two runs'
    # ratios agree closer with it).
    LEVEL = 0.25

    @property
    def wall_time(self):
        """Its steps' wall time, at the LEVEL percentile."""
        return percentile([s for steps in self.wall for s in steps], self.LEVEL)

    @property
    def cpu_time(self):
        """Its steps' CPU time (all of the process's threads, tf.data's too), at the LEVEL percentile:
        the work a step does, without the time it waited for a core."""
        return percentile([s for steps in self.cpu for s in steps], self.LEVEL)

    def spread(self, reference, clock="wall"):
        """The lowest and highest ratio to ``reference``'s time over tenths of the run (consecutive
        rounds): how far the ratio moves within one run."""
        mine, theirs = getattr(self, clock), getattr(reference, clock)
        groups = min(10, len(mine))
        ratios = []
        for group in range(groups):
            part = slice(group * len(mine) // groups, (group + 1) * len(mine) // groups)
            ratios.append(percentile([s for steps in mine[part] for s in steps], self.LEVEL)
                          / percentile([s for steps in theirs[part] for s in steps], self.LEVEL))
        return min(ratios), max(ratios)


def round_robin(runs, rounds, steps, block_seconds=None, most_steps=None, seconds=None):
    """A :class:`Timing` of each callable in ``runs`` (each does ``steps`` steps, and returns their
    times, or None for a block timed whole): one untimed warm-up call each (tracing, compilation,
    caches), then ``rounds`` timed calls each, in turn, forwards and backwards by turns, so drift in
    the machine's speed hits every variant alike. With ``block_seconds``, a variant whose ``steps``
    take less (a fast step) does as many steps a block as fill that time, up to ``most_steps``: the
    cheap variants, whose percentiles a few slow steps move most, get as many samples as the time
    allows. With ``seconds``, as many more rounds as that time holds (from the warm-up's steps)."""
    counts, round_seconds = {}, 0.0
    for name, run in runs.items():
        warm = run()
        counts[name] = None  # the callable's own block
        if block_seconds and warm is not None:
            step = statistics.median(warm[0])
            counts[name] = max(steps, min(most_steps or steps * 100, int(block_seconds / step)))
            round_seconds += counts[name] * step
    if seconds and round_seconds:
        rounds = max(rounds, int(seconds / round_seconds))
    timings = {name: Timing() for name in runs}
    order = list(runs)
    for number in range(rounds):
        for name in order if number % 2 == 0 else reversed(order):
            wall, cpu = time.perf_counter(), time.process_time()
            steps_timed = runs[name](counts[name]) if counts[name] else runs[name]()
            if steps_timed is None:
                steps_timed = ([(time.perf_counter() - wall) / steps], [(time.process_time() - cpu) / steps])
            timings[name].wall.append(list(steps_timed[0]))
            timings[name].cpu.append(list(steps_timed[1]))
    return timings


def cpu_bf16_flags(cpuinfo="/proc/cpuinfo"):
    """The bfloat16 flags (AMX tiles, AVX512 dot products) this CPU reports, for the precision rows."""
    path = Path(cpuinfo)
    flags = next((line.split(":", 1)[1].split() for line in path.read_text().splitlines()
                  if line.startswith("flags")), []) if path.is_file() else []
    return [flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags]


SECTIONS = ("pairs", "rkd", "precision", "fit", "data", "views")

# Each pair row's ratio is to the step that does the same work but the row's method, so that the
# machine's speed level cancels: these VMs change level for minutes at a time, and a level changes
# a small student's overhead-bound step and a conv teacher's forward pass unlike (two runs at
# 2c95a6c: the keras.io plain step 5.7 then 3.8 ms, its online step 44 then 40 ms). The cached
# losses are against a plain step; a student on views against a plain step on the same jittered
# inputs; every variant that runs the teacher on each batch against Keras's own Distiller, which
# does too. Two rows compare unlike work, and are the prices the others leave out: Keras's
# Distiller against a plain step (running the teacher on every batch: what caching saves) and the
# plain jittered step against a plain step (the jitter). Rows not named here: against a plain step.
REFERENCES = {"ours_views": "plain_jitter", "ours_online": "keras_distiller", "ours_online_jitter": "keras_distiller",
              "ours_hint": "keras_distiller", "ours_attention": "keras_distiller", "keras_io": "keras_distiller"}
PRICES = ("keras_distiller", "plain_jitter")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="timed blocks per variant, round-robin")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed block")
    parser.add_argument("--seconds", type=float, default=120,
                        help="on TensorFlow, the timed rounds of each pair last about this long (--rounds at least)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=SECTIONS, help="the sections to time")
    parser.add_argument("--record", type=Path, help="also write the figures, commit and machine to this JSON file")
    args = parser.parse_args()
    started = time.perf_counter()

    pairs = {
        "seed002": (*seed002_models(), 256),
        "seed000": (*seed000_models(), 64),
    }
    ratios = {}
    print(f"machine: {machine()['cpu']}, {machine()['cores']} cores, {THREADS} threads, Keras {keras.__version__} "
          f"on {BACKEND}; " + (f"pairs interleaved step by step for about {args.seconds:.0f} s each, other sections "
                               if BACKEND == "tensorflow" else "") +
          f"{args.rounds} rounds of {args.steps} steps or more per variant; the 25th percentile of each's steps")
    for pair, (make_teacher, make_student, layers, batch_size) in pairs.items():
        if "pairs" not in args.only:
            break
        if pair == "seed002":
            print(f"{'pair':8} {'variant':34} {'ms/step':>9} {'ratio':>7}  spread     {'cpu ms':>8} {'ratio':>7}  spread"
                  "  against")
        timings = time_pair(make_teacher, make_student, layers, batch_size, args.rounds, args.steps, args.seconds)
        ratios[pair] = {}
        for name, timing in timings.items():
            reference = REFERENCES.get(name, "plain")
            print_row(pair, name, timing, timings[reference], ratios[pair], reference)
    if "rkd" in args.only:
        time_and_print_rkd(args, ratios)
    if "precision" in args.only:
        time_and_print_precisions(args, ratios)
    if "fit" in args.only and BACKEND == "tensorflow":
        time_and_print_fit_overhead(args, ratios)
    if "data" in args.only and BACKEND == "tensorflow":
        time_and_print_data_path(args, ratios)
    if "views" in args.only:
        time_and_print_views_forward(args, ratios)
    if args.record:
        from kd.artifacts import write_json
        from kd.records import record

        figures = {"ratios": ratios, "rounds": args.rounds, "steps": args.steps, "seconds": args.seconds,
                   "threads": THREADS, "backend": BACKEND, "prices": list(PRICES)}
        write_json(args.record, record(figures, started, root=ROOT, code=("bench", "src")))
    print(json.dumps(ratios))


def print_row(group, name, timing, reference, into, reference_name=None):
    """One variant's wall and CPU time a step, the ratios of each to ``reference``'s and their spreads
    (``reference_name``, where given, is recorded beside them)."""
    ratio, cpu_ratio = timing.wall_time / reference.wall_time, timing.cpu_time / reference.cpu_time
    (low, high), (cpu_low, cpu_high) = timing.spread(reference), timing.spread(reference, "cpu")
    print(f"{group:8} {name:34} {1000 * timing.wall_time:9.2f} {ratio:7.2f}  {low:.2f}-{high:.2f}  "
          f"{1000 * timing.cpu_time:8.2f} {cpu_ratio:7.2f}  {cpu_low:.2f}-{cpu_high:.2f}"
          + (f"  {reference_name}" if reference_name else ""))
    into[name] = {"ratio": round(ratio, 3), "spread": [round(low, 3), round(high, 3)],
                  "ms": round(1000 * timing.wall_time, 2), "cpu_ms": round(1000 * timing.cpu_time, 2),
                  "cpu_ratio": round(cpu_ratio, 3), "cpu_spread": [round(cpu_low, 3), round(cpu_high, 3)]}
    if reference_name:
        into[name]["reference"] = reference_name


def time_and_print_rkd(args, ratios):
    print("rkd (teacher online) against a plain step, the TA notebook's pair, by batch size")
    timings = time_rkd(max(3, args.rounds // 3), max(2, args.steps // 3))  # slow steps: fewer of them
    into = ratios.setdefault("rkd", {})
    for (batch_size, name), timing in timings.items():
        print_row(f"batch {batch_size}", name, timing, timings[(batch_size, "plain")],
                  into.setdefault(str(batch_size), {}))


def time_and_print_precisions(args, ratios):
    print(f"precision (plain steps, seed 002 models, batch 256); CPU bf16 flags: {' '.join(cpu_bf16_flags()) or 'none'}")
    timings = time_precisions(args.rounds, args.steps)
    into = ratios.setdefault("precision", {})
    for (name, policy), timing in timings.items():
        print_row(name, policy, timing, timings[(name, "float32")], into.setdefault(name, {}))


def time_and_print_fit_overhead(args, ratios):
    print("teacher step, float32, batch 256: where the time goes around it")
    timings = time_fit_overhead(args.rounds, args.steps)
    into = ratios.setdefault("fit_overhead", {})
    for name, timing in timings.items():
        print_row("teacher", name, timing, timings["bare tf.function step"], into)


def time_views_forward(rounds, blocks=4):
    """Seconds per block of the views stage's teacher forward pass (the TA notebook's teacher with its dense
    layer cached, as configs/views.txt caches it, on blocks of ``predict_batch_size`` images): called op
    by op (eager), as the stage ran it before, and through Keras's compiled predict function, as it runs now."""
    from kd.batches import predict_batch_size
    from kd.inspection import outputs_of, predicted_outputs

    teacher = feature_layers(seed002_models()[0](), ["dense"], "bench", "teacher")
    x = random_images(predict_batch_size((28, 28, 1)))[0]

    def block(forward):
        def run():
            for _ in range(blocks):
                outputs = forward(x)
                keras.ops.convert_to_numpy(outputs["logits"])  # wait for the result, as the stage writes it
            return None
        return run

    return round_robin({"eager": block(lambda images: outputs_of(teacher, images, training=False)),
                        "compiled": block(lambda images: predicted_outputs(teacher, images))}, rounds, blocks)


def time_and_print_views_forward(args, ratios):
    print("views stage: the teacher's forward pass on blocks of images, eager against compiled")
    timings = time_views_forward(max(3, args.rounds // 3))
    into = ratios.setdefault("views_forward", {})
    for name, timing in timings.items():
        print_row("views", name, timing, timings["eager"], into)


def time_and_print_data_path(args, ratios):
    print("data path: seed 002's pair, batch 256, 54,000 uint8 images on disk vs the same in memory")
    timings = time_data_path(args.rounds, args.steps)
    into = ratios.setdefault("data_path", {})
    for name, timing in timings.items():
        print_row("seed002", name, timing, timings[name.split(",")[0] + ", in memory"], into)


if __name__ == "__main__":
    main()
