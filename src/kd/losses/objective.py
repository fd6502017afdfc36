"""The objective of a distilled model: hard labels and the weighted terms of its teachers.

    loss = (1 − w) · CE(labels, student) + w · Σᵢ weightᵢ · termᵢ

Built from plain values (the terms, the soft-target weight, the teachers' weights by name), so
mutual learning and a user's own training loop construct it the same way as params do.
"""

import math

from kd.losses.kinds import DecoupledKD, LogitTerm
from kd.losses.labels import add_all, mixed_hard_label_loss
from kd.losses.terms import stateless_uniform, with_formula


class Objective:
    """The loss of one distilled model: hard labels and the weighted terms of its teachers.

    The first of ``teachers`` is the nearest teacher, whose layers the feature terms read. ``dense`` gives each teacher its own logit terms (DGKD), with
    ``drop`` of them left out at random in each batch (seeded); otherwise the teachers'
    targets are averaged with their weights (an ensemble).
    """

    def __init__(self, terms, soft_target_weight, teachers, dense=False, drop=0, seed=0):
        """``terms``: ``((term, weight), ...)``, as :func:`kd.losses.kinds.parse_loss` gives them;
        ``teachers``: ``{name: weight}``, the nearest teacher first."""
        self.terms = tuple((with_formula(term), weight) for term, weight in terms)
        self.soft_target_weight = soft_target_weight
        self.teachers = tuple(dict(teachers).items())
        self.dense = dense
        self.drop = drop
        self.seed = seed
        self.trainable_layers = []
        self.names = self._part_names()

    @classmethod
    def of(cls, distillation, seed=0):
        """The objective a model's ``distillation`` (its params spec) declares."""
        return cls(distillation.loss, distillation.soft_target_weight, dict(distillation.teachers),
                   distillation.dense, distillation.drop, seed)

    @property
    def student_layers(self):
        return tuple(dict.fromkeys(n for term, _ in self.terms if term.features for n in term.student_layers))

    @property
    def teacher_layers(self):
        return tuple(dict.fromkeys(n for term, _ in self.terms if term.features for n in term.teacher_layers))

    @property
    def needs_epoch(self):
        return any(isinstance(term, DecoupledKD) and term.config["warmup_epochs"] > 1 for term, _ in self.terms)

    def build(self, student_shapes, teacher_shapes):
        """Check feature shapes and create the terms' trainable layers (call under the strategy scope)."""
        for term, _ in self.terms:
            if term.features:
                self.trainable_layers += term.build(student_shapes, teacher_shapes)

    def _labels(self):
        counts = {}
        for term, _ in self.terms:
            counts[term.name] = counts.get(term.name, 0) + 1
        seen, labels = {}, []
        for term, _ in self.terms:
            seen[term.name] = seen.get(term.name, 0) + 1
            labels.append(term.name if counts[term.name] == 1 else f"{term.name}_{seen[term.name]}")
        return labels

    def _part_names(self):
        """The curves this objective logs besides ``loss`` and ``accuracy``."""
        names = ["hard_loss", "soft_loss"]
        several = len(self.terms) > 1
        for label, (term, _) in zip(self._labels(), self.terms, strict=True):
            if several:
                names.append(label)
            if self.dense and isinstance(term, LogitTerm) and len(self.teachers) > 1:
                names += [f"{label}_{teacher}" for teacher, _ in self.teachers]
            names += [f"{label}_{part}" for part in term.parts]
        return names

    def __call__(self, labels, student, teachers, epoch=None, step=None, mixing=None):
        """``(loss, parts)`` for a batch.

        ``student`` and each of ``teachers`` map ``"logits"`` (and requested layer names) to
        tensors; ``teachers`` are in the order of ``self.teachers``. ``mixing`` is ``(partner
        labels, λ)`` for mixed-up images (views with mixup), whose hard labels are mixed alike.
        """
        from keras import ops

        student_logits = ops.cast(student["logits"], "float32")  # float16/bfloat16 under mixed precision
        hard = mixed_hard_label_loss(labels, student_logits, mixing)
        parts, weighted = {"hard_loss": hard}, []
        several = len(self.terms) > 1
        for label, (term, weight) in zip(self._labels(), self.terms, strict=True):
            if term.features:
                value, term_parts = term.value(student, teachers[0])
            elif self.dense and len(self.teachers) > 1:
                value, term_parts = self._dense(label, term, labels, student_logits, teachers, epoch, step, parts)
            else:
                targets = self._ensemble(term, labels, teachers)
                value, term_parts = term.value(targets, student_logits, labels, epoch)
            if several:
                parts[label] = value
            parts.update({f"{label}_{name}": part for name, part in term_parts.items()})
            weighted.append(value if weight == 1.0 else weight * value)
        soft = add_all(weighted)
        parts["soft_loss"] = soft
        w = self.soft_target_weight
        return w * soft + (1.0 - w) * hard, parts

    def _ensemble(self, term, labels, teachers):
        """The teachers' targets, averaged as probabilities with the teachers' weights."""
        from keras import ops

        each = [term.teacher_targets(outputs["logits"], labels) for outputs in teachers]
        if len(each) == 1:
            return each[0]
        total = sum(weight for _, weight in self.teachers)
        log_weights = [math.log(weight / total) if weight > 0 else -math.inf for _, weight in self.teachers]
        kept = [(lw, targets) for lw, targets in zip(log_weights, each, strict=True) if lw > -math.inf]
        return tuple(
            ops.logsumexp(ops.stack([lw + targets[i] for lw, targets in kept]), axis=0)
            for i in range(len(each[0]))
        )

    def _dense(self, label, term, labels, student_logits, teachers, epoch, step, parts):
        """DGKD: one term per teacher, summed with the teachers' weights, ``drop`` left out per batch."""
        from keras import ops

        values = []
        for (name, _), outputs in zip(self.teachers, teachers, strict=True):
            value, _ = term.value(term.teacher_targets(outputs["logits"], labels), student_logits, labels, epoch)
            parts[f"{label}_{name}"] = value
            values.append(value)
        weights = ops.convert_to_tensor([weight for _, weight in self.teachers], "float32")
        if self.drop:
            # The `drop` teachers with the smallest uniform draws leave this batch's sum; seeded by step.
            draws = stateless_uniform(len(values), self.seed, step)
            threshold = ops.sort(draws)[self.drop - 1]
            weights = weights * ops.cast(draws > threshold, "float32")
        return ops.sum(weights * ops.stack(values)), {}
