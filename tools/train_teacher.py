"""Train a MobileNetV3Small on a folder of images, outside kd: the user's own teacher.

kd can start from a teacher the user trained elsewhere and saved to a Keras file. This
script makes one the way a practitioner would, in the spirit of a cats-vs-dogs transfer
learning lab: ``keras.applications.MobileNetV3Small`` (``weights=None``, as nothing can be
downloaded here, so it trains from scratch) with a global-average-pooled head and a Dense
layer, trained on a folder with one subfolder of images per class read by
``keras.utils.image_dataset_from_directory``, and saved with ``model.save`` as ``.keras``.

The model takes RGB pixels in 0..255 (float): MobileNetV3's own ``Rescaling`` layer
(``include_preprocessing=True``) maps them to [-1, 1]. Class ``i`` is the ``i``-th class
folder in alphabetical order. If ``--data`` has a ``train/`` subfolder, only it is used
(``test/`` stays unseen); ``--validation-split`` of it is held out to report accuracy.
From scratch, MobileNet needs several hundred steps before it takes off: on the default
shapes (1,440 training images) the defaults reach about 98.6 % validation accuracy in
20 epochs of batch 16, about 3.5 minutes on 2 CPU cores. The saved file holds the Adam
state too (about 12 MB for 0.94 M parameters).

    python tools/make_shapes.py
    python tools/train_teacher.py                            # teachers/shapes_mobilenet.keras
    python tools/train_teacher.py --outputs probabilities --epochs 20 --alpha 0.75
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def build(image_size, classes, alpha, minimalistic, outputs, bn_momentum):
    """A flat functional MobileNetV3Small ending in logits or in a softmax."""
    base = keras.applications.MobileNetV3Small(
        input_shape=(image_size, image_size, 3),
        alpha=alpha,
        minimalistic=minimalistic,
        include_top=False,
        weights=None,
        pooling="avg",
        include_preprocessing=True,  # Rescaling(1/127.5, offset=-1): inputs are 0..255
    )
    # The application's BatchNormalization momentum, 0.999, suits ImageNet-length runs; in a
    # few hundred steps from scratch its moving statistics would lag far behind the weights.
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = bn_momentum
    x = keras.layers.Dropout(0.2, name="dropout")(base.output)
    x = keras.layers.Dense(classes, name="logits")(x)
    if outputs == "probabilities":
        x = keras.layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(base.input, x, name="mobilenet_v3_small_teacher")


def dihedral(images, labels):
    """A random flip and quarter turn of each batch: shapes keep their class under both."""
    images = tf.image.random_flip_left_right(images)
    images = tf.image.rot90(images, tf.random.uniform((), 0, 4, tf.int32))
    return images, labels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="sources/shapes", type=Path)
    parser.add_argument("--out", default="teachers/shapes_mobilenet.keras", type=Path)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--validation-split", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=1.0, help="width multiplier (default 1.0)")
    parser.add_argument("--minimalistic", action="store_true", help="no squeeze-excite, hard-swish, 5x5")
    parser.add_argument("--bn-momentum", type=float, default=0.9)
    parser.add_argument("--outputs", choices=["logits", "probabilities"], default="logits")
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="no random flips and turns")
    args = parser.parse_args(argv)
    if args.out.suffix != ".keras":
        parser.error("--out must end in .keras")

    keras.utils.set_random_seed(args.seed)
    # As kd's own stages do (kd.seeding.seed_everything): without it, TensorFlow's kernels may add in
    # another order on another CPU, and the teacher, and everything taught by it, differ by machine.
    tf.config.experimental.enable_op_determinism()
    folder = args.data / "train" if (args.data / "train").is_dir() else args.data
    train, val = keras.utils.image_dataset_from_directory(
        folder,
        image_size=(args.image_size, args.image_size),
        batch_size=args.batch_size,
        validation_split=args.validation_split,
        subset="both",
        seed=args.seed,
    )
    classes = train.class_names
    model = build(args.image_size, len(classes), args.alpha, args.minimalistic, args.outputs, args.bn_momentum)
    steps = args.epochs * int(train.cardinality())
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(args.learning_rate, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=args.outputs == "logits"),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    if args.augment:
        train = train.map(dihedral, num_parallel_calls=1)
    model.fit(train.prefetch(2), validation_data=val, epochs=args.epochs, verbose=2)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(val, verbose=0)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    # What kd will do with it: load it safely, without its training configuration.
    loaded = keras.models.load_model(args.out, safe_mode=True, compile=False)
    images, _ = next(iter(val))
    np.testing.assert_allclose(loaded.predict_on_batch(images), model.predict_on_batch(images), atol=1e-5)
    print(
        f"train_teacher: {args.out} ({model.count_params():,} params, {args.outputs}, classes {classes}): "
        f"validation accuracy {accuracy:.4f} on {len(val.file_paths)} "
        f"images after {args.epochs} epochs in {seconds:.0f} s"
    )


if __name__ == "__main__":
    main()
