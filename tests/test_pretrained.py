"""A teacher you bring (a Keras file) and keras.applications architectures."""

import numpy as np
import pytest

from kd.errors import ArtifactError, ParamsError
from kd.params import parse_params


def functional_teacher(path, classes=3, shape=(8, 8, 3), softmax=False, softmax_layer=False, lambda_layer=False):
    import keras

    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    if lambda_layer:
        x = keras.layers.Lambda(lambda t: t * 2.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax" if softmax else None, name="scores")(x)
    if softmax_layer:
        outputs = keras.layers.Softmax(name="probabilities")(outputs)
    model = keras.Model(inputs, outputs, name="my_teacher")
    model.save(path)
    return model


def spec_for(raw_params, path, outputs="logits"):
    raw_params["pretrained"] = {"mine": {"path": str(path), "outputs": outputs}}
    raw_params["distill"]["student"]["teacher"] = "mine"
    return parse_params(raw_params).model("mine")


def test_a_teacher_from_a_file_gives_logits_even_when_it_ends_with_a_softmax(raw_params, tmp_path):
    from kd.pretrained import load_pretrained

    x = np.random.default_rng(0).random((5, 8, 8, 3)).astype(np.float32)
    plain = functional_teacher(tmp_path / "plain.keras")
    loaded = load_pretrained(spec_for(raw_params, tmp_path / "plain.keras"), (8, 8, 3), 3)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=1e-6)

    for kind in ("activation", "layer"):
        path = tmp_path / f"soft_{kind}.keras"
        model = functional_teacher(path, softmax=kind == "activation", softmax_layer=kind == "layer")
        logits = load_pretrained(spec_for(raw_params, path, "probabilities"), (8, 8, 3), 3).predict(x, verbose=0)
        probabilities = model.predict(x, verbose=0)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.testing.assert_allclose(exp / exp.sum(axis=1, keepdims=True), probabilities, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case, message", [
    ("missing", r"pretrained.mine.path: .*nowhere.keras does not exist"),
    ("corrupt", r"pretrained.mine.path: .*corrupt.keras is not a Keras archive \(a .keras file is a zip archive"),
    ("random bytes", r"pretrained.mine.path: .*random_bytes.keras is not a Keras archive"),
    ("broken zip", r"pretrained.mine.path: .*broken_zip.keras cannot be loaded as a Keras model"),
    ("lambda", r"cannot be loaded as a Keras model: .*safe mode"),
    ("input", r"takes inputs of shape \(8, 8, 3\) but the data's images are \(28, 28, 1\)"),
    ("classes", r"gives outputs of shape \(3,\) but the data has 10 classes"),
    ("softmax as logits", r"pretrained.mine.outputs: logits, but the last layer of .* \(scores\) applies a softmax; "
                          r"declare outputs: probabilities"),
    ("logits as probabilities", r"pretrained.mine.outputs: probabilities, but the last layer of .* \(scores\) applies "
                                r"no softmax to remove"),
])
def test_a_bad_teacher_file_is_refused_naming_the_key(raw_params, tmp_path, case, message):
    from kd.pretrained import load_pretrained

    shape, classes, outputs = (8, 8, 3), 3, "logits"
    path = tmp_path / f"{case.replace(' ', '_')}.keras"
    if case == "missing":
        path = tmp_path / "nowhere.keras"
    elif case == "corrupt":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    elif case == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case == "broken zip":  # a zip archive, but not a Keras one
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "no model here")
    else:
        functional_teacher(path, lambda_layer=case == "lambda", softmax=case == "softmax as logits")
    if case == "input":
        shape = (28, 28, 1)
    if case == "classes":
        classes = 10
    if case == "logits as probabilities":
        outputs = "probabilities"
    with pytest.raises((ArtifactError, ParamsError), match=message):
        load_pretrained(spec_for(raw_params, path, outputs), shape, classes)


def test_an_application_architecture_is_built_offline_resized_and_counted(raw_params):
    from kd.models import build_model
    from kd.profiling import count_flops

    raw_params["architectures"]["mobile"] = {"application": "MobileNetV3Small",
                                             "config": {"alpha": 0.75, "minimalistic": True}}
    raw_params["train"]["teacher"]["architecture"] = "mobile"
    model = build_model(parse_params(raw_params).model("teacher"), (28, 28, 1), 10)
    assert [layer.name for layer in model.layers] == ["input_layer", "resizing", "pixels", "MobileNetV3Small", "logits"]
    assert model.get_layer("resizing").get_config()["height"] == 32  # MobileNetV3 takes 32x32 at least
    assert model.output_shape == (None, 10)
    flops, note = count_flops(model)
    assert note is None and 500_000 < flops < 2_000_000


def test_mobilenet_v3_small_flops_match_the_published_count():
    """The FLOPs counter on a keras.applications network at 224×224 against the paper's 56 M MACs."""
    import keras

    from kd.profiling import count_flops

    model = keras.applications.MobileNetV3Small(weights=None, input_shape=(224, 224, 3))
    flops, _ = count_flops(model)
    assert abs(flops / 56e6 - 1) < 0.15, flops


@pytest.mark.parametrize("architecture, message", [
    ({"application": "MobileNetV9"}, r"architectures.mobile \(model 'teacher', MobileNetV9\): keras.applications has no "
                                     r"'MobileNetV9'"),
    ({"application": "MobileNetV3Small", "config": {"alpha": 0.75, "minimalist": True}},
     r"MobileNetV3Small\): Keras rejected it: .*minimalist"),
    ({"application": "MobileNetV3Small", "weights": "nowhere.weights.h5"},
     r"architectures.mobile \(model 'teacher', MobileNetV3Small\).weights: nowhere.weights.h5 does not exist"),
])
def test_a_bad_application_is_refused_naming_the_architecture(raw_params, architecture, message):
    from kd.models import build_model

    raw_params["architectures"]["mobile"] = architecture
    raw_params["train"]["teacher"]["architecture"] = "mobile"
    with pytest.raises(ParamsError, match=message):
        build_model(parse_params(raw_params).model("teacher"), (28, 28, 1), 10)


def test_a_teacher_of_0_to_255_pixels_takes_kds_images_through_input_scale(raw_params, tmp_path):
    from kd.pretrained import load_pretrained

    x = np.random.default_rng(0).random((4, 8, 8, 3)).astype(np.float32)
    model = functional_teacher(tmp_path / "pixels.keras")
    raw_params["pretrained"] = {"mine": {"path": str(tmp_path / "pixels.keras"), "outputs": "logits",
                                         "input_scale": 255}}
    loaded = load_pretrained(parse_params(raw_params).model("mine"), (8, 8, 3), 3)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(255 * x, verbose=0), rtol=1e-5)
