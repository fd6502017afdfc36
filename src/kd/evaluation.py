"""Test-set metrics of a trained model, and its agreement with its teacher."""

import numpy as np

from kd.training import predict_logits


def evaluate(model, test, teacher=None):
    """Return the metrics of ``model`` on split ``test`` as a JSON-ready dict.

    ``accuracy``, ``loss`` (mean cross-entropy), ``errors`` (misclassified images),
    ``examples``; with a ``teacher`` model also ``agreement``: the share of test images
    on which the model's top-1 class equals the teacher's.
    """
    logits = predict_logits(model, test.inputs())
    predicted = logits.argmax(axis=1)
    metrics = {
        "accuracy": float(np.mean(predicted == test.y)),
        "loss": cross_entropy(logits, test.y),
        "errors": int(np.sum(predicted != test.y)),
        "examples": len(test),
    }
    if teacher is not None:
        teacher_predicted = predict_logits(teacher, test.inputs()).argmax(axis=1)
        metrics["agreement"] = float(np.mean(predicted == teacher_predicted))
    return metrics


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy, computed stably in float64."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))
