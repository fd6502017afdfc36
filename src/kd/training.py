"""The one training path for every model: a teacher is a student with no teacher.

A model with a teacher learns from its teacher's logits in one of two ways:

- *cached* (inputs not augmented): trains on ``(x, (labels, teacher_logits))``. The
  teacher's logits on the training images are computed once by the teacher's own stage
  and shuffled together with the labels, so a distillation step costs what a plain step
  costs. Valid because the teacher runs in inference mode on fixed images.
- *online* (inputs augmented): each batch is augmented once and the teacher runs on that
  same augmented batch, in inference mode and outside the gradient tape, so its targets
  match what the student sees. A step costs a plain step plus one teacher forward pass.

Augmentation applies to training batches only.

Validation (each epoch, on the validation split) always uses the hard labels, so the
curves of all models are comparable.
"""

import contextlib
import math

import numpy as np
import tensorflow as tf
import keras
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from kd.devices import precision_policy, strategy_for
from kd.errors import ArtifactError, TrainingError, deferred_termination, termination_requested
from kd.losses import distillation_loss, hard_label_loss
from kd.models import build_augmentation, build_optimizer

PREDICT_BATCH_SIZE = 1024


def seed_everything(seed):
    """Seed Python, NumPy and TF, and make TF ops deterministic: same params, same numbers."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class DistillationTrainer(keras.Model):
    """Wraps ``student`` to train it on hard labels and, given a teacher, soft targets.

    With ``distillation`` and no ``teacher``, batches carry the teacher's cached logits;
    with a ``teacher`` model, it runs on every batch (after ``augment``, if given). Only
    the wrapped model is saved; the wrapper exists for its ``train_step``.
    """

    def __init__(self, student, distillation=None, teacher=None, augment=None):
        super().__init__(name=f"{student.name}_trainer")
        if teacher is not None and distillation is None:
            raise ValueError(f"model {student.name!r}: a teacher model needs distillation settings")
        self.student = student
        self.distillation = distillation
        self.teacher = teacher
        self.augment = augment
        if teacher is not None:
            teacher.trainable = False
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.hard_tracker = keras.metrics.Mean(name="hard_loss")
        self.soft_tracker = keras.metrics.Mean(name="soft_loss")

    @property
    def metrics(self):
        trackers = [self.loss_tracker, self.accuracy]
        if self.distillation is not None:
            trackers += [self.hard_tracker, self.soft_tracker]
        return trackers

    def call(self, x, training=False):
        return self.student(x, training=training)

    def train_step(self, data):
        x, targets, _ = keras.utils.unpack_x_y_sample_weight(data)
        batch = tf.shape(x)[0]
        if self.augment is not None:
            x = self.augment(x, training=True)
        if self.teacher is not None:  # online: the teacher sees the batch the student sees
            labels, teacher_logits = targets, tf.stop_gradient(self.teacher(x, training=False))
        elif self.distillation is not None:
            labels, teacher_logits = targets
        else:
            labels = targets
        with tf.GradientTape() as tape:
            logits = self.student(x, training=True)
            if self.distillation is None:
                loss = hard_label_loss(labels, logits)
            else:
                loss, hard, soft = distillation_loss(
                    labels,
                    teacher_logits,
                    logits,
                    self.distillation.temperature,
                    self.distillation.soft_target_weight,
                )
            if self.student.losses:  # weight regularizers from the layer configs
                loss = loss + tf.add_n(self.student.losses)
            # Replicas' gradients are summed, so each takes its share of the mean; a loss-scale
            # optimizer (mixed precision) scales up here and unscales in `apply`.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss_for_gradients = self.optimizer.scale_loss(loss / replicas if replicas > 1 else loss)
        variables = self.student.trainable_variables
        self.optimizer.apply(tape.gradient(loss_for_gradients, variables), variables)
        self.loss_tracker.update_state(loss, sample_weight=batch)
        self.accuracy.update_state(labels, logits)
        if self.distillation is not None:
            self.hard_tracker.update_state(hard, sample_weight=batch)
            self.soft_tracker.update_state(soft, sample_weight=batch)
        return {metric.name: metric.result() for metric in self.metrics}

    def test_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = self.student(x, training=False)
        self.loss_tracker.update_state(hard_label_loss(labels, logits), sample_weight=tf.shape(x)[0])
        self.accuracy.update_state(labels, logits)
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy.result()}


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training with a TrainingError naming the model and epoch when the loss diverges."""

    def __init__(self, model_name):
        super().__init__()
        self.model_name = model_name

    def on_epoch_end(self, epoch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingError(
                f"model {self.model_name!r}: the training loss became {loss} in epoch {epoch + 1}; "
                "lower its learning rate (optimizer.config.learning_rate in params.yaml)"
            )


class KeepBestEpoch(keras.callbacks.Callback):
    """At the end of training, restore the weights of the epoch best on the validation split.

    Best is the highest validation accuracy; ties go to the lower validation loss, then to
    the earlier epoch. The test set never takes part in the choice.
    """

    def __init__(self, model_name):
        super().__init__()
        self.model_name = model_name
        self.best = None  # (accuracy, -loss) of the best epoch so far
        self.best_epoch = None
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        score = (float(logs["val_accuracy"]), -float(logs["val_loss"]))
        if self.best is None or score > self.best:
            self.best, self.best_epoch = score, epoch
            self.best_weights = [np.array(w) for w in self.model.student.get_weights()]

    def on_train_end(self, logs=None):
        if self.best_weights is None:
            return
        self.model.student.set_weights(self.best_weights)
        print(f"{self.model_name}: kept the weights of epoch {self.best_epoch + 1} "
              f"(validation accuracy {self.best[0]:.4f}, loss {-self.best[1]:.4f})")


class StopOnTermination(keras.callbacks.Callback):
    """End training after the current batch once SIGTERM was received."""

    def on_train_batch_end(self, batch, logs=None):
        if termination_requested():
            self.model.stop_training = True


def fit(model, spec, train, validation, seed, teacher_logits=None, teacher=None, curves_dir=None):
    """Train ``model`` (built from ``spec``) in place; return the Keras ``History``.

    Call it, and build ``model``, inside :func:`training_scope`: variables must be
    created under the strategy and with the precision policy they are trained with.

    ``train`` and ``validation`` are :class:`kd.data.Split`. A model with a teacher gets
    either ``teacher_logits`` (the teacher's logits on ``train``, row for row) or, when
    ``spec.online_teacher`` (augmented inputs), the ``teacher`` model itself. With
    ``curves_dir``, DVCLive writes the per-epoch metrics there as ``dvc plots`` data
    (``train/loss``, ``eval/accuracy``, and for a distilled model ``train/hard_loss`` and
    ``train/soft_loss``).
    """
    given = {"teacher": teacher is not None, "teacher_logits": teacher_logits is not None}
    wanted = {"teacher": spec.online_teacher, "teacher_logits": spec.distillation is not None and not spec.online_teacher}
    if given != wanted:
        raise ValueError(f"model {spec.name!r}: expected {[k for k, v in wanted.items() if v] or 'no teacher'}, "
                         f"given {[k for k, v in given.items() if v] or 'none'}")
    targets = (train.y,)
    if teacher_logits is not None:
        if teacher_logits.shape != (len(train), train.num_classes):
            raise ArtifactError(
                f"logits of teacher {spec.teacher!r} have shape {teacher_logits.shape}; expected "
                f"{(len(train), train.num_classes)} (one row per training image, one column per class). "
                "Were they computed on another version of data/train.npz? Rerun its stage."
            )
        targets += (teacher_logits.astype(np.float32),)
    callbacks = [StopOnNonFiniteLoss(spec.name), StopOnTermination()]
    if spec.keep == "best":
        callbacks.append(KeepBestEpoch(spec.name))
    if curves_dir is not None:
        # dvc.yaml declares the plots itself, and `dvc repro` owns the experiment.
        callbacks.append(DVCLiveCallback(live=Live(str(curves_dir), dvcyaml=False, save_dvc_exp=False)))
    augment = build_augmentation(spec, train.x.shape[1:], seed)
    trainer = DistillationTrainer(model, spec.distillation, teacher=teacher, augment=augment)
    trainer.compile(optimizer=build_optimizer(spec, steps_per_epoch=math.ceil(len(train) / spec.batch_size)))
    with deferred_termination():  # a SIGTERM stops training between batches, then raises
        history = trainer.fit(
            batches(train.inputs, *targets, batch_size=spec.batch_size, shuffle_seed=seed),
            validation_data=batches(validation.inputs, validation.y, batch_size=PREDICT_BATCH_SIZE),
            epochs=spec.epochs,
            shuffle=False,  # the pipeline above shuffles, seeded
            callbacks=callbacks,
            verbose=2,  # one line per epoch: readable in DVC's log
        )
    return history


@contextlib.contextmanager
def training_scope(spec):
    """Set the precision policy and enter the distribution strategy of ``spec``.

    Build the model and call :func:`fit` inside it: variables must be created under the
    strategy and with the policy they will be trained with.
    """
    policy = precision_policy(spec.precision)
    strategy = strategy_for(spec.distribution)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    print(f"{spec.name}: {strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__}), {policy}")
    try:
        with strategy.scope():
            yield
    finally:
        keras.config.set_dtype_policy(previous)


def batches(x, *targets, batch_size, shuffle_seed=None):
    """A ``tf.data`` pipeline of ``(x, targets)`` batches from in-memory arrays.

    Shuffling permutes indices (seeded, reshuffled each epoch) and gathers whole batches,
    which is cheaper than shuffling the images themselves.
    """
    tensors = [tf.constant(x)] + [tf.constant(t) for t in targets]
    indices = tf.data.Dataset.range(len(x))
    if shuffle_seed is not None:
        indices = indices.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)

    def gather(index):
        x_batch, *target_batches = (tf.gather(t, index) for t in tensors)
        return x_batch, (target_batches[0] if len(target_batches) == 1 else tuple(target_batches))

    return indices.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def predict_logits(model, x):
    """The model's logits on ``x`` in inference mode, as float32."""
    return np.asarray(model.predict(x, batch_size=PREDICT_BATCH_SIZE, verbose=0), dtype=np.float32)
