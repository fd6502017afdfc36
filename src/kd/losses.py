"""The distillation loss of Hinton et al. (2015), "Distilling the Knowledge in a Neural Network".

    loss = w * T² * KL(softmax(t / T) ‖ softmax(s / T)) + (1 - w) * CE(y, s)

``t`` are the teacher's logits, ``s`` the student's, ``y`` the integer labels, ``T`` the
temperature and ``w`` the soft-target weight (``soft_target_weight`` in params.yaml).
The soft-target gradients scale as 1/T², so the T² keeps the two terms balanced as T
changes. Both terms are averaged over the batch.

Keras 3.15's ``keras.distillation.LogitsDistillation`` with its default string loss
``"kl_divergence"`` applies neither the softmax nor T², which is why the loss is
written out here and tested against a NumPy computation.
"""

import tensorflow as tf


def hard_label_loss(labels, logits):
    """Mean cross-entropy of integer ``labels`` against ``logits``."""
    logits = tf.cast(logits, tf.float32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def soft_target_loss(teacher_logits, student_logits, temperature):
    """Mean over the batch of T² · KL(softmax(t/T) ‖ softmax(s/T))."""
    teacher_log_probs = tf.nn.log_softmax(teacher_logits / temperature, axis=-1)
    student_log_probs = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    kl = tf.reduce_sum(tf.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)
    return temperature**2 * tf.reduce_mean(kl)


def distillation_loss(labels, teacher_logits, student_logits, temperature, soft_target_weight):
    """Return ``(total, hard, soft)``: the weighted loss and its two terms."""
    student_logits = tf.cast(student_logits, tf.float32)  # float16 logits under mixed precision
    hard = hard_label_loss(labels, student_logits)
    soft = soft_target_loss(teacher_logits, student_logits, temperature)
    return soft_target_weight * soft + (1.0 - soft_target_weight) * hard, hard, soft
