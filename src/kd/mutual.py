"""Deep mutual learning: peers trained together from scratch, each taught by the others as they learn.

Zhang et al. (CVPR 2018): with no trained teacher, a group of peers learns better together
than each alone. In every step each peer sees the same batch (augmented once, if its group
augments), and minimises

    (1 − w) · CE(labels, peer) + w · Σ terms against the *current* logits of the other peers,

the others' predictions taken without gradient and averaged over them (kd's DGKD form of
several teachers with weights 1/(K − 1): DML's mean KL over peers for the ``hinton`` term at
T = 1, which is DML's CE + KL up to a factor of 2 at w = 0.5). All peers are updated in the
same step by one optimizer on the sum of their losses: each peer's gradient is its own loss's,
as the others' predictions enter it without gradient. ``mutual.<group>`` sets ``temperature``,
``soft_target_weight``, ``loss`` (logit kinds) and the training keys the peers share (optimizer
included); each peer (``peers.<name>``) has its architecture. Peer ``i``'s initial weights are
drawn with seed ``seed + i`` (``i`` from 0 in params order), so the first peer starts where a
scratch model of its architecture does. Backend-agnostic, as kd.training's trainer.
"""

import math

import numpy as np
import keras

from kd.batches import predict_batch_size, training_batches
from kd.losses.objective import Objective
from kd.models import build_augmentation, build_model, build_optimizer
from kd.devices import current_strategy
from kd.seeding import seed_everything, set_random_seed
from kd.training import EpochLog, StopOnTermination, log_epoch
from kd.errors import deferred_termination


def peer_objective(group, peer):
    """The objective of ``peer``: the group's terms, the other peers as its teachers."""
    others = [name for name in group.peers if name != peer]
    return Objective(group.loss, group.soft_target_weight, {name: 1.0 / len(others) for name in others}, dense=True)


class MutualTrainer(keras.Model):
    """Trains the peers of one group together: one forward pass each per batch, one update of all."""

    def __init__(self, group, peers, augment=None):
        super().__init__(name=f"{group.name}_mutual")
        self.group = group
        self.peers = list(peers)  # in group.peers order
        self.augment = augment
        self.objectives = [peer_objective(group, name) for name in group.peers]
        self.trackers = {name: {metric: keras.metrics.Mean(name=f"{name}/{metric}")
                                for metric in ("loss", *objective.names)}
                         for name, objective in zip(group.peers, self.objectives, strict=True)}
        self.accuracies = {name: keras.metrics.SparseCategoricalAccuracy(name=f"{name}/accuracy")
                           for name in group.peers}
        self._training = True

    @property
    def metrics(self):
        return [m for name in self.group.peers for m in (*self.trackers[name].values(), self.accuracies[name])]

    def call(self, x, training=False):
        if training and self.augment is not None:
            x = self.augment(x, training=True)
        return [keras.ops.cast(peer(x, training=training), "float32") for peer in self.peers]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        from keras.src.losses.loss import scale_loss_for_distribution  # private: see kd.training

        from kd.losses.labels import add_all, hard_label_loss

        self._training = training
        batch = keras.ops.shape(y)[0]
        losses = []
        for index, (name, objective) in enumerate(zip(self.group.peers, self.objectives, strict=True)):
            if not training:
                loss = hard_label_loss(y, y_pred[index])
            else:
                others = [{"logits": keras.ops.stop_gradient(y_pred[j])} for j in range(len(self.peers)) if j != index]
                loss, parts = objective(y, {"logits": y_pred[index]}, others)
                for part, tracker in self.trackers[name].items():
                    if part != "loss":
                        tracker.update_state(parts[part], sample_weight=batch)
                if self.peers[index].losses:
                    loss = loss + add_all(self.peers[index].losses)
            self.trackers[name]["loss"].update_state(loss, sample_weight=batch)
            self.accuracies[name].update_state(y, y_pred[index])
            losses.append(loss)
        return scale_loss_for_distribution(add_all(losses))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        # Training logs every part; validation each peer's hard-label loss and accuracy, as any model's.
        # (compute_loss ran just before, in the same trace, and left which it was.)
        return {metric.name: metric.result() for metric in self.metrics
                if self._training or metric.name.rsplit("/", 1)[-1] in ("loss", "accuracy")}


class PeerCurves(keras.callbacks.Callback):
    """Each peer's per-epoch curves in its own DVCLive folder, named as for any model (train/loss, eval/accuracy)."""

    def __init__(self, folders):
        super().__init__()
        from dvclive import Live

        self.lives = {name: Live(str(folder), dvcyaml=False, save_dvc_exp=False) for name, folder in folders.items()}

    def on_epoch_end(self, epoch, logs=None):
        for name, live in self.lives.items():
            own = {}
            for metric, value in (logs or {}).items():
                prefix, _, rest = metric.partition(f"{name}/")
                if rest and prefix in ("", "val_"):
                    own[prefix + rest] = value
            log_epoch(live, own)

    def on_train_end(self, logs=None):
        for live in self.lives.values():
            live.end()


def fit_group(group, specs, train, validation, seed, curves=None):
    """Build and train the peers of ``group`` (``specs``: their ModelSpecs in group order); return them.

    Call inside :func:`kd.devices.training_scope` of the first peer (the group's settings).
    ``curves`` maps each peer to the folder for its DVCLive curves.
    """
    peers = []
    for index, spec in enumerate(specs):
        set_random_seed(seed + index)  # each peer its own initial weights
        peers.append(build_model(spec, train.image_shape, train.num_classes))
    seed_everything(seed)  # the batches, dropout and augmentation as any model's with this seed
    first = specs[0]
    steps_per_epoch = math.ceil(len(train) / first.batch_size)
    trainer = MutualTrainer(group, peers, augment=build_augmentation(first, train.image_shape, seed))
    trainer.compile(optimizer=build_optimizer(first, steps_per_epoch))  # one for all: each peer's own gradient
    callbacks = [EpochLog(first.batch_size), StopOnTermination(), GroupFinite(group)]
    if curves is not None:
        callbacks.append(PeerCurves(curves))
    strategy = current_strategy()
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
