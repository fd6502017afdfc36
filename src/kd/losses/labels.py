"""The hard-label loss every model trains with, teacher or not, and the sum of a loss's parts.

Apart from the distillation maths (:mod:`kd.losses.terms`), so that the models that learn from
labels alone (train@) do not depend on the formulas of the terms.
"""


def hard_label_loss(labels, logits):
    """Mean cross-entropy of integer ``labels`` against ``logits``."""
    from keras import ops

    logits = ops.cast(logits, "float32")
    return ops.mean(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def mixed_hard_label_loss(labels, logits, mixing):
    """Mixup's cross-entropy: λ · CE(labels) + (1 − λ) · CE(partner labels), averaged over the batch;
    ``mixing`` is ``(partner labels, λ)``, or None for :func:`hard_label_loss`."""
    from keras import ops

    if mixing is None:
        return hard_label_loss(labels, logits)
    partner_labels, lam = mixing
    logits = ops.cast(logits, "float32")
    own = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    partner = ops.sparse_categorical_crossentropy(partner_labels, logits, from_logits=True)
    lam = ops.cast(lam, "float32")
    return ops.mean(lam * own + (1.0 - lam) * partner)


def add_all(values):
    """``values[0] + values[1] + …``, left to right (one term: itself)."""
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total
