"""Deep mutual learning: peers trained together from scratch, each taught by the others as they learn.

Zhang et al. (CVPR 2018): with no trained teacher, a group of peers learns better together
than each alone. In every step each peer sees the same batch (augmented once, if its group
augments), and minimises

    (1 − w) · CE(labels, peer) + w · Σ terms against the *current* logits of the other peers,

the others' predictions taken without gradient and averaged over them (kd's DGKD form of
several teachers with weights 1/(K − 1): DML's mean KL over peers for the ``hinton`` term at
T = 1, which is DML's CE + KL up to a factor of 2 at w = 0.5). All peers are updated in the
same step, each by its own optimizer. ``mutual.<group>`` sets ``temperature``,
``soft_target_weight``, ``loss`` (logit kinds) and the training keys the peers share; each peer
(``peers.<name>``) has its architecture and may have its own optimizer. Peer ``i``'s initial
weights are drawn with seed ``seed + i`` (``i`` from 0 in params order), so the first peer
starts where a scratch model of its architecture does.
"""

import math

import numpy as np
import keras
import tensorflow as tf

from kd.batches import predict_batch_size, training_batches
from kd.losses import Objective
from kd.models import build_augmentation, build_model, build_optimizer
from kd.params import Distillation
from kd.training import EpochLog, StopOnTermination, seed_everything
from kd.errors import deferred_termination


def peer_objective(group, peer):
    """The objective of ``peer``: the group's terms, the other peers as its teachers."""
    others = [name for name in group.peers if name != peer]
    weight = 1.0 / len(others)
    distillation = Distillation(others[0], group.temperature, group.soft_target_weight, group.loss,
                                tuple((name, weight) for name in others), dense=True)
    return Objective(distillation)


class MutualTrainer(keras.Model):
    """Trains the peers of one group together: one forward pass each per batch, one update each."""

    def __init__(self, group, peers, optimizers, augment=None):
        super().__init__(name=f"{group.name}_mutual")
        self.group = group
        self.peers = list(peers)  # in group.peers order
        self.peer_optimizers = list(optimizers)
        self.augment = augment
        self.objectives = [peer_objective(group, name) for name in group.peers]
        self.trackers = {name: {metric: keras.metrics.Mean(name=f"{name}/{metric}")
                                for metric in ("loss", *objective.names)}
                         for name, objective in zip(group.peers, self.objectives, strict=True)}
        self.accuracies = {name: keras.metrics.SparseCategoricalAccuracy(name=f"{name}/accuracy")
                           for name in group.peers}

    @property
    def metrics(self):
        return [m for name in self.group.peers for m in (*self.trackers[name].values(), self.accuracies[name])]

    def call(self, x, training=False):
        return [peer(x, training=training) for peer in self.peers]

    def train_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        if self.augment is not None:
            x = self.augment(x, training=True)
        batch = tf.shape(x)[0]
        with tf.GradientTape(persistent=True) as tape:
            logits = [tf.cast(peer(x, training=True), tf.float32) for peer in self.peers]
            results = []
            for index, objective in enumerate(self.objectives):
                others = [{"logits": tf.stop_gradient(logits[j])} for j in range(len(self.peers)) if j != index]
                loss, parts = objective(labels, {"logits": logits[index]}, others)
                if self.peers[index].losses:
                    loss = loss + tf.add_n(self.peers[index].losses)
                results.append((loss, parts))
        for peer, optimizer, (loss, _) in zip(self.peers, self.peer_optimizers, results, strict=True):
            variables = peer.trainable_variables
            optimizer.apply(tape.gradient(optimizer.scale_loss(loss), variables), variables)
        del tape
        for name, peer_logits, (loss, parts) in zip(self.group.peers, logits, results, strict=True):
            self.trackers[name]["loss"].update_state(loss, sample_weight=batch)
            for part, tracker in self.trackers[name].items():
                if part != "loss":
                    tracker.update_state(parts[part], sample_weight=batch)
            self.accuracies[name].update_state(labels, peer_logits)
        return {metric.name: metric.result() for metric in self.metrics}

    def test_step(self, data):
        from kd.losses import hard_label_loss

        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        logs = {}
        for name, peer in zip(self.group.peers, self.peers, strict=True):
            peer_logits = peer(x, training=False)
            self.trackers[name]["loss"].update_state(hard_label_loss(labels, peer_logits), sample_weight=tf.shape(x)[0])
            self.accuracies[name].update_state(labels, peer_logits)
            logs[f"{name}/loss"] = self.trackers[name]["loss"].result()
            logs[f"{name}/accuracy"] = self.accuracies[name].result()
        return logs


class PeerCurves(keras.callbacks.Callback):
    """Each peer's per-epoch curves in its own DVCLive folder, named as for any model (train/loss, eval/accuracy)."""

    def __init__(self, folders):
        super().__init__()
        from dvclive import Live

        self.lives = {name: Live(str(folder), dvcyaml=False, save_dvc_exp=False) for name, folder in folders.items()}

    def on_epoch_end(self, epoch, logs=None):
        from dvclive.utils import standardize_metric_name

        for name, live in self.lives.items():
            for metric, value in (logs or {}).items():
                prefix, _, rest = metric.partition(f"{name}/")
                if rest and prefix in ("", "val_"):
                    live.log_metric(standardize_metric_name(prefix + rest, "dvclive.keras"), value)
            live.next_step()

    def on_train_end(self, logs=None):
        for live in self.lives.values():
            live.end()


def fit_group(group, specs, train, validation, seed, curves=None):
    """Build and train the peers of ``group`` (``specs``: their ModelSpecs in group order); return them.

    Call inside :func:`kd.training.training_scope` of the first peer (the group's settings).
    ``curves`` maps each peer to the folder for its DVCLive curves.
    """
    peers = []
    for index, spec in enumerate(specs):
        keras.utils.set_random_seed(seed + index)  # each peer its own initial weights
        peers.append(build_model(spec, train.image_shape, train.num_classes))
    seed_everything(seed)  # the batches, dropout and augmentation as any model's with this seed
    first = specs[0]
    steps_per_epoch = math.ceil(len(train) / first.batch_size)
    optimizers = [build_optimizer(spec, steps_per_epoch) for spec in specs]
    if keras.config.dtype_policy().name == "mixed_float16":
        optimizers = [keras.optimizers.LossScaleOptimizer(optimizer) for optimizer in optimizers]
    trainer = MutualTrainer(group, peers, optimizers, augment=build_augmentation(first, train.image_shape, seed))
    trainer.compile(optimizer=optimizers[0])
    for optimizer, peer in zip(optimizers, peers, strict=True):
        optimizer.build(peer.trainable_variables)
    callbacks = [EpochLog(first.batch_size), StopOnTermination(), GroupFinite(group)]
    if curves is not None:
        callbacks.append(PeerCurves(curves))
    strategy = tf.distribute.get_strategy()
    with deferred_termination():
        trainer.fit(
            training_batches(train, batch_size=first.batch_size, shuffle_seed=seed, strategy=strategy),
            validation_data=training_batches(validation, batch_size=predict_batch_size(validation.image_shape),
                                             strategy=strategy),
            epochs=first.epochs, shuffle=False, callbacks=callbacks, verbose=0,
        )
    return peers


class GroupFinite(keras.callbacks.Callback):
    """Stop, naming the peer and epoch, when a peer's loss or weights diverge (kd.training.StopOnNonFiniteLoss
    for a group)."""

    def __init__(self, group):
        super().__init__()
        self.group = group

    def on_epoch_end(self, epoch, logs=None):
        from kd.errors import TrainingError

        for name, peer in zip(self.group.peers, self.model.peers, strict=True):
            loss = float((logs or {}).get(f"{name}/loss", 0.0))
            finite = math.isfinite(loss) and all(np.isfinite(keras.ops.convert_to_numpy(v.value)).all()
                                                 for v in peer.trainable_variables)
            if not finite:
                raise TrainingError(f"peer {name!r} of mutual group {self.group.name!r}: the loss or the weights "
                                    f"became non-finite in epoch {epoch + 1} (loss {loss}); lower the learning rate")
