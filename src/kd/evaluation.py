"""Test-set metrics of a model from its logits, and its agreement with its teacher."""

import numpy as np


def test_metrics(logits, labels, teacher_logits=None):
    """Return JSON-ready metrics of ``logits`` against integer ``labels``.

    ``accuracy``, ``loss`` (mean cross-entropy), ``errors`` (misclassified images),
    ``examples``; given the teacher's logits on the same images, also ``agreement``:
    the share of images on which the model's top-1 class equals the teacher's.
    """
    predicted = logits.argmax(axis=1)
    metrics = {
        "accuracy": float(np.mean(predicted == labels)),
        "loss": cross_entropy(logits, labels),
        "errors": int(np.sum(predicted != labels)),
        "examples": int(len(labels)),
    }
    if teacher_logits is not None:
        metrics["agreement"] = float(np.mean(predicted == teacher_logits.argmax(axis=1)))
    return metrics


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy, computed stably in float64."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))
