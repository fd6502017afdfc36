"""The one training path for every model: a teacher is a student with no teacher.

A distilled model learns from its teachers through :class:`kd.teachers.Teachers` (cached
logits shuffled with the labels, or the teacher models run online on each batch) and from
the objective of :mod:`kd.losses` (hard labels plus the weighted terms of its ``loss``).
Augmentation applies to training batches only, before the teachers see them.

Validation (each epoch, on the validation split) always uses the hard labels, so the
curves of all models are comparable.
"""

import math
import time

import numpy as np
import keras
from dvclive import Live
# Private, as Keras 3.15 exports no public form: what its own compute_loss applies to a replica's loss.
from keras.src.losses.loss import scale_loss_for_distribution

from kd.batches import predict_batch_size, training_batches
from kd.devices import current_strategy
from kd.errors import TrainingError, deferred_termination, termination_requested
from kd.inspection import feature_layers, layer_shapes, outputs_of
from kd.losses.labels import add_all, hard_label_loss
from kd.models import build_augmentation, build_optimizer
from kd.views import ViewInputs


class DistillationTrainer(keras.Model):
    """Wraps ``student`` to train it on hard labels and, given an objective, its teachers.

    ``teachers`` (a :class:`kd.teachers.Teachers`) gives the teachers' outputs per batch;
    ``objective`` (a :class:`kd.losses.objective.Objective`) combines them with the labels. Only the
    wrapped model is saved; the wrapper exists for its loss, and for the objective's own
    trainable layers (FitNets regressors), which are not part of the student.

    Written as Keras's own trainers and ``keras.distillation`` are, so it trains on every
    backend: ``call`` (training) augments the batch (or rebuilds its views) and runs the student
    and any online teacher on it; ``compute_loss`` combines them with the labels and the cached
    teacher outputs; Keras's backend-specific ``train_step`` takes the gradients and updates.
    """

    def __init__(self, student, objective=None, teachers=None, augment=None, view_inputs=None):
        super().__init__(name=f"{student.name}_trainer")
        if (objective is None) != (teachers is None):
            raise ValueError(f"model {student.name!r}: an objective needs teachers, and teachers an objective")
        self.student = student
        self.objective = objective
        self.teachers = teachers
        self.augment = augment
        self.view_inputs = view_inputs  # a student on views rebuilds each batch's views (kd.views.ViewInputs)
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.parts = PartMeans(objective.names) if objective is not None else None
        self.student_features = None
        self.epoch = None
        if view_inputs is not None:  # tracked, so their random state lives where the backend keeps state
            self.view_layers, self.view_generator = view_inputs.layers, view_inputs.generator
        if teachers is not None and teachers.online:
            for model in teachers.models:
                model.trainable = False  # frozen: never among the variables the optimizer updates
            self.teacher_models = list(teachers.models)  # tracked as frozen state (JAX passes it in)
        if objective is not None:
            features = feature_layers(student, objective.student_layers,
                                      f"distill.{student.name}.loss", f"student {student.name!r}")
            self.student_features = features if features is not student else None  # not tracked twice
            if objective.student_layers or objective.teacher_layers:
                objective.build(layer_shapes(student, objective.student_layers),
                                teachers.layer_shapes(objective.teacher_layers))
            self.extra_layers = objective.trainable_layers  # tracked, so trained and checkpointed with the wrapper
            if objective.needs_epoch:
                self.epoch = keras.Variable(1, dtype="int64", trainable=False, name="epoch")

    @property
    def metrics(self):
        # Keras's own loss tracker (train_step updates it), then ours, in the order the curves have had.
        return [m for m in (self._loss_tracker, self.accuracy, self.parts) if m is not None]

    def _across_workers(self, logs):
        """The logs in a form Keras 3.15 can average across workers.

        Under MultiWorkerMirroredStrategy Keras reduces each log with ``strategy.reduce("MEAN",
        value, axis=0)``, which needs an axis that scalar logs do not have: each is given one,
        and the reduction returns the mean over replicas as a scalar. Elsewhere the logs are
        returned as they are.
        """
        if keras.backend.backend() != "tensorflow":
            return logs
        import tensorflow as tf

        if not isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return logs
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 builds a model before fit by reducing a first distributed batch across
        # replicas, which fails under MultiWorkerMirroredStrategy (keras-team/keras#20585). Here
        # everything is built already (the student, the loss's layers): only the optimizer is left.
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
                with self.distribute_strategy.scope():
                    self.optimizer.build(self.trainable_variables)
                return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def call(self, x, training=False):
        """Inference: the student's logits. Training: what the loss needs of this batch, as a dict."""
        if not training:  # (a views batch, as Keras may pass one to build the model, holds its images)
            return self.student(x["images"] if isinstance(x, dict) else x, training=False)
        mixing = None
        if self.view_inputs is not None:
            x, mixing = self.view_inputs(x, x["images"])
        elif self.augment is not None:
            x = self.augment(x, training=True)
        if self.objective is None:
            return {"logits": self.student(x, training=True)}
        student = self.student if self.student_features is None else self.student_features
        online = self.teachers(x, ()) if self.teachers.online else None
        return {"student": outputs_of(student, x, training=True), "teachers": online, "mixing": mixing}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels, cached = (y[0], y[1:]) if isinstance(y, (tuple, list)) else (y, ())
        if not training:  # validation: the hard labels, as every model's curves
            return hard_label_loss(labels, y_pred)
        if self.objective is None:
            loss = hard_label_loss(labels, y_pred["logits"])
        else:
            teachers = y_pred["teachers"] if y_pred["teachers"] is not None else self.teachers(None, cached)
            loss, parts = self.objective(labels, y_pred["student"], teachers, epoch=self.epoch,
                                         step=self.optimizer.iterations, mixing=y_pred["mixing"])
            self.parts.update_state(parts, keras.ops.shape(labels)[0])
        if self.student.losses:  # weight regularizers from the layer configs
            loss = loss + add_all(self.student.losses)
        # Replicas' gradients are summed, so each takes its share of the mean (TensorFlow's strategies).
        return scale_loss_for_distribution(loss)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels = y[0] if isinstance(y, (tuple, list)) else y
        logits = y_pred if not isinstance(y_pred, dict) else y_pred.get("logits", None)
        if logits is None:
            logits = y_pred["student"]["logits"]
        self.accuracy.update_state(labels, logits)
        logs = {self._loss_tracker.name: self._loss_tracker.result(), self.accuracy.name: self.accuracy.result()}
        if isinstance(y_pred, dict) and self.parts is not None:  # training a distilled model
            logs.update(self.parts.result())
        return self._across_workers(logs)


class PartMeans(keras.metrics.Metric):
    """The epoch means of an objective's parts (``name -> scalar`` each batch), weighted by batch size.

    Part for part what a ``keras.metrics.Mean`` with the batch size as sample weight computes (the
    same float32 product, sums and quotient), kept as one vector of totals and one count: a step
    updates every part with two assignments instead of two per part, which on a small model's
    3-millisecond step is a measurable share (``make bench``'s cached losses).
    """

    def __init__(self, names, name="parts"):
        super().__init__(name=name)
        self.names = tuple(names)
        self.totals = self.add_variable(shape=(len(self.names),), initializer="zeros", name="totals")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, parts, batch_size):
        batch_size = keras.ops.cast(batch_size, self.dtype)
        values = keras.ops.stack([keras.ops.cast(parts[name], self.dtype) for name in self.names])
        self.totals.assign_add(values * batch_size)
        self.count.assign_add(batch_size)

    def result(self):
        means = keras.ops.divide_no_nan(self.totals, self.count)
        return {name: means[i] for i, name in enumerate(self.names)}


class CountEpochs(keras.callbacks.Callback):
    """Keep the trainer's epoch counter (from 1) for terms that warm up (DKD)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.epoch.assign(epoch + 1)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training with a TrainingError naming the model and epoch when the loss or the weights diverge.

    Both are checked: the epoch's loss is the mean of the losses the updates were computed from,
    and a NaN input can leave the weights NaN while a loss stays finite.
    """

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
        for variable in self.model.student.trainable_variables:
            if not np.isfinite(keras.ops.convert_to_numpy(variable.value)).all():
                raise TrainingError(
                    f"model {self.model_name!r}: weights of {variable.path} became non-finite in epoch {epoch + 1} "
                    f"(the loss was {loss}); check the data for NaN or huge values, or lower the learning rate"
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

    # Reads no logs, so Keras may call it from its callback thread: batches are dispatched without
    # waiting for each step's logs to be fetched.
    async_safe = True

    def on_train_batch_end(self, batch, logs=None):
        if termination_requested():
            self.model.stop_training = True


class EpochLog(keras.callbacks.Callback):
    """One line per epoch, as Keras's ``verbose=2`` prints it, without Keras's per-batch progress bar;
    within an epoch longer than ``LONG_EPOCH`` seconds, a progress line at most every ``EVERY`` seconds.

    The progress bar takes every batch's logs, which makes Keras wait for each step to finish
    before it dispatches the next. This reads the logs once per epoch; its per-batch hook reads
    none and only looks at the clock, so Keras may run it off the training thread (``async_safe``).
    """

    async_safe = True
    EVERY = 10.0
    LONG_EPOCH = 30.0

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self.started = self.last = time.perf_counter()
        self.last_done = 0
        print(f"Epoch {epoch + 1}/{self.params['epochs']}", flush=True)

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        steps = self.params.get("steps") or 0
        if now - self.last < self.EVERY or not steps:
            return
        done = batch + 1
        if (now - self.started) / done * steps < self.LONG_EPOCH:
            return
        rate = (done - self.last_done) / (now - self.last)  # steps per second since the last line
        self.last, self.last_done = now, done
        if rate > 0 and done < steps:  # (the epoch's own line follows the last step)
            print(f"  step {done}/{steps} - {rate * self.batch_size:,.0f} images/s - "
                  f"{(steps - done) / rate:.0f} s left in the epoch", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        steps = self.params.get("steps") or 0
        per_step = f" - {1000 * seconds / steps:.0f}ms/step" if steps else ""
        values = " - ".join(f"{name}: {value:.4f}" for name, value in sorted((logs or {}).items()))
        print(f"{steps}/{steps} - {seconds:.0f}s{per_step} - {values}", flush=True)


def fit(model, spec, train, validation, seed, teachers=None, curves_dir=None, objective=None):
    """Train ``model`` (built from ``spec``) in place; return the Keras ``History``.

    Call it, and build ``model``, inside :func:`training_scope`: variables must be
    created under the strategy and with the precision policy they are trained with.

    ``train`` and ``validation`` are :class:`kd.data.Split`. A distilled model gets its
    ``teachers`` from :func:`kd.teachers.load_teachers` and its ``objective`` from
    :meth:`kd.losses.objective.Objective.of` (built by the caller: a model trained on labels
    alone never imports the loss maths). With ``curves_dir``, DVCLive writes
    the per-epoch metrics there as ``dvc plots`` data (``train/loss``, ``eval/accuracy``, and
    for a distilled model ``train/hard_loss``, ``train/soft_loss`` and the objective's parts).
    """
    callbacks = [EpochLog(spec.batch_size), StopOnNonFiniteLoss(spec.name), StopOnTermination()]
    if spec.keep == "best":
        callbacks.append(KeepBestEpoch(spec.name))
    if curves_dir is not None:
        callbacks.append(Curves(curves_dir))
    augment = build_augmentation(spec, train.image_shape, seed)
    views = teachers.views if teachers is not None else None
    view_inputs = ViewInputs(spec.views, train.image_shape, seed) if views is not None else None
    trainer = DistillationTrainer(model, objective, teachers=teachers, augment=augment, view_inputs=view_inputs)
    if trainer.epoch is not None:
        callbacks.append(CountEpochs())
    steps_per_epoch = math.ceil(len(train) / spec.batch_size)
    trainer.compile(optimizer=build_optimizer(spec, steps_per_epoch=steps_per_epoch))
    columns = teachers.dataset_columns if teachers is not None else ()
    strategy = current_strategy()
    with deferred_termination():  # a SIGTERM stops training between batches, then raises
        history = trainer.fit(
            training_batches(train, columns, batch_size=spec.batch_size, shuffle_seed=seed, strategy=strategy,
                             views=views, epochs=spec.epochs),
            validation_data=training_batches(validation, batch_size=predict_batch_size(validation.image_shape),
                                             strategy=strategy),
            steps_per_epoch=steps_per_epoch if views is not None else None,  # views: one stream of all epochs
            epochs=spec.epochs,
            shuffle=False,  # the pipeline above shuffles, seeded
            callbacks=callbacks,
            verbose=0,  # EpochLog prints one line per epoch: readable in DVC's log
        )
    return history


class Curves(keras.callbacks.Callback):
    """Each epoch's logs as DVCLive metrics in ``folder`` (``train/loss``, ``eval/accuracy``, ...), as
    DVCLive's own Keras callback writes them, without importing TensorFlow. dvc.yaml declares the plots
    itself and `dvc repro` owns the experiment, so DVCLive writes no dvc.yaml and makes no experiment."""

    def __init__(self, folder):
        super().__init__()
        self.live = Live(str(folder), dvcyaml=False, save_dvc_exp=False)

    def on_epoch_end(self, epoch, logs=None):
        log_epoch(self.live, logs)

    def on_train_end(self, logs=None):
        self.live.end()


def log_epoch(live, logs):
    """One epoch's Keras logs into ``live``, named as ``dvclive.keras`` names them."""
    from dvclive.utils import standardize_metric_name

    for metric, value in (logs or {}).items():
        live.log_metric(standardize_metric_name(metric, "dvclive.keras"), value)
    live.next_step()
