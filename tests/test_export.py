"""kd.export on a tiny model of 8x8 images: SavedModel, float32 and int8 TFLite, LiteRT evaluation."""

import hashlib

import keras
import numpy as np
import pytest

from kd.artifacts import load_model, save_model
from kd.errors import KdError
from kd.export import (
    ExportError,
    _float_ops,
    _interpreter,
    convert_tflite,
    dequantize,
    evaluate_tflite,
    export_saved_model,
    predict_tflite,
    prepare,
    quantize,
    write_tflite,
)


def toy_images(count, seed):
    """A bright 3x3 patch in the left, middle or right of a noisy 8x8 image; its place is the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    images = rng.uniform(0.0, 0.3, (count, 8, 8, 1)).astype(np.float32)
    for image, label, row in zip(images, labels, rng.integers(0, 6, count)):
        column = (0, 2, 5)[label] + int(rng.integers(0, 2))
        image[row : row + 3, column : column + 3, 0] = rng.uniform(0.8, 1.0)
    return images, labels


def tiny_model(name="toy"):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu", name="hidden"),
         keras.layers.Dense(3, name="logits")],
        name=name,
    )


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The toy model trained, exported, converted to float32 and int8 and written."""
    folder = tmp_path_factory.mktemp("export")
    x_train, y_train = toy_images(600, seed=1)
    x_test, y_test = toy_images(300, seed=2)
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
    saved = export_saved_model(model, folder / "toy")
    float_bytes = convert_tflite(saved)
    int8_bytes = convert_tflite(saved, x_train[:100])
    write_tflite(folder / "float.tflite", float_bytes)
    write_tflite(folder / "int8.tflite", int8_bytes)
    return {
        "folder": folder, "model": model, "saved": saved, "x": x_test, "y": y_test,
        "keras_logits": model.predict(x_test, verbose=0), "float_bytes": float_bytes, "int8_bytes": int8_bytes,
        "representative": x_train[:100],
    }


def tree_digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_int8_file_takes_and_returns_int8(shipped):
    interpreter = _interpreter(shipped["int8_bytes"])
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert np.dtype(inp["dtype"]) == np.int8 and np.dtype(out["dtype"]) == np.int8
    assert inp["quantization"][0] > 0 and out["quantization"][0] > 0
    assert _float_ops(shipped["int8_bytes"]) == []
    assert len(shipped["int8_bytes"]) < len(shipped["float_bytes"])
    float_interpreter = _interpreter(shipped["float_bytes"])
    assert np.dtype(float_interpreter.get_input_details()[0]["dtype"]) == np.float32


def test_int8_accuracy_is_close_to_the_float_models(shipped):
    folder, x, y, reference = shipped["folder"], shipped["x"], shipped["y"], shipped["keras_logits"]
    keras_accuracy = np.mean(reference.argmax(1) == y)
    floats = evaluate_tflite(folder / "float.tflite", x, y, reference, warmup=2, repeats=5)
    int8 = evaluate_tflite(folder / "int8.tflite", x, y, reference, warmup=2, repeats=5)
    assert keras_accuracy > 0.95  # the toy problem is learned
    assert floats["accuracy"] == pytest.approx(keras_accuracy) and floats["agreement"] == 1.0
    assert int8["accuracy"] >= keras_accuracy - 0.02 and int8["agreement"] >= 0.97
    assert int8["examples"] == 300 and int8["errors"] == round((1 - int8["accuracy"]) * 300)
    assert int8["size_bytes"] == (folder / "int8.tflite").stat().st_size
    assert int8["latency_ms_batch1"] > 0 and int8["input_dtype"] == "int8" and int8["eval_batch_size"] == 256


def test_dequantized_outputs_are_the_float_files_within_quantization_error(shipped):
    x = shipped["x"]
    interpreter, batch = prepare(shipped["int8_bytes"], batch_size=64)
    int8_logits = predict_tflite(interpreter, batch, x)
    float_logits = predict_tflite(*prepare(shipped["float_bytes"], batch_size=64), x)
    out = interpreter.get_output_details()[0]
    scale = out["quantization"][0]
    spread = float_logits.max() - float_logits.min()
    assert np.abs(int8_logits - float_logits).max() < 0.1 * spread
    assert np.abs(int8_logits - float_logits).mean() < 4 * scale
    # the first image by hand: raw int8 output, dequantized with the file's (scale, zero_point)
    single, _ = prepare(shipped["int8_bytes"], batch_size=1)
    (inp,), (out,) = single.get_input_details(), single.get_output_details()
    single.set_tensor(inp["index"], quantize(x[:1], inp))
    single.invoke()
    raw = single.get_tensor(out["index"])
    assert raw.dtype == np.int8
    np.testing.assert_array_equal(int8_logits[:1], (raw.astype(np.float32) - out["quantization"][1]) * np.float32(scale))


def test_quantize_rounds_half_away_from_zero_and_clips():
    details = {"dtype": np.int8, "quantization": (0.5, -1)}
    x = np.array([0.0, 0.25, 0.75, -0.25, 100.0, -100.0], np.float32)  # x / scale: 0, 0.5, 1.5, -0.5, ...
    np.testing.assert_array_equal(quantize(x, details), np.array([-1, 0, 1, -2, 127, -128], np.int8))
    np.testing.assert_array_equal(dequantize(np.array([-128, -1, 127], np.int8), details), [-63.5, 0.0, 64.0])
    floats = {"dtype": np.float32, "quantization": (0.0, 0)}
    np.testing.assert_array_equal(quantize(x, floats), x)


def test_batched_evaluation_equals_one_image_at_a_time(shipped):
    x = shipped["x"][:70]  # not a multiple of the batch: the last batch is padded
    for content in (shipped["int8_bytes"], shipped["float_bytes"]):
        one = predict_tflite(*prepare(content, batch_size=1), x)
        interpreter, batch = prepare(content, batch_size=32)
        assert batch == 32
        np.testing.assert_allclose(predict_tflite(interpreter, batch, x), one, rtol=1e-5, atol=1e-6)


def test_saved_model_and_tflite_files_are_byte_stable(shipped, tmp_path):
    model = shipped["model"]
    export_saved_model(model, tmp_path / "again")  # the same model, later in the process
    assert tree_digest(tmp_path / "again") == tree_digest(shipped["saved"])
    # Two objects loaded from one .keras file (as a stage loads a model): their variables sit
    # at other addresses. (A loaded model names its variables "hidden/kernel", not the built
    # model's "toy/hidden/kernel", so its SavedModel differs from the built one's by those names.)
    save_model(model, tmp_path / "toy.keras")
    export_saved_model(load_model(tmp_path / "toy.keras"), tmp_path / "loaded")
    export_saved_model(load_model(tmp_path / "toy.keras"), tmp_path / "loaded_again")
    loaded = tree_digest(tmp_path / "loaded")
    assert set(loaded) >= {"saved_model.pb", "fingerprint.pb", "variables/variables.index"}
    assert tree_digest(tmp_path / "loaded_again") == loaded
    # Keras lists the saved variables in set order (by memory address); here they are in name order
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(tmp_path / "loaded" / "variables" / "variables"))
    shapes = [reader.get_variable_to_shape_map()[f"_all_variables/{i}/.ATTRIBUTES/VARIABLE_VALUE"] for i in range(4)]
    assert shapes == [[16], [64, 16], [3], [16, 3]]  # hidden/bias, hidden/kernel, logits/bias, logits/kernel
    # TFLite files keep no variable names: the same bytes from either SavedModel, every time
    assert convert_tflite(tmp_path / "loaded") == shipped["float_bytes"]
    assert convert_tflite(tmp_path / "loaded", shipped["representative"]) == shipped["int8_bytes"]


EXPORT_SCRIPT = """
import sys
from kd.artifacts import load_model
from kd.export import export_saved_model
model = load_model(sys.argv[1])
states = [v.numpy().tolist() for v in model.non_trainable_variables if v.name == "seed_generator_state"]
export_saved_model(model, sys.argv[2])
after = [v.numpy().tolist() for v in model.non_trainable_variables if v.name == "seed_generator_state"]
print("STATES", states, after)
"""


def test_a_model_with_dropout_exports_the_same_bytes_from_each_run(tmp_path):
    # Each load draws Dropout's seed-generator state at random (as the export stage does, once per
    # run); the SavedModel must not carry it.
    import subprocess
    import sys

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dropout(0.5),
                              keras.layers.Dense(3, name="logits")])
    save_model(model, tmp_path / "dropout.keras")
    drawn = []
    for run in ("first", "second"):
        result = subprocess.run([sys.executable, "-c", EXPORT_SCRIPT, str(tmp_path / "dropout.keras"),
                                 str(tmp_path / run)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        states, after = result.stdout.split("STATES ", 1)[1].rsplit("] [", 1)
        drawn.append(states + "]")
        assert states + "]" == "[" + after.strip()  # the model's own state is given back
    assert drawn[0] != drawn[1]  # what made two exports differ
    assert tree_digest(tmp_path / "first") == tree_digest(tmp_path / "second")


def test_export_replaces_a_folder_atomically(shipped, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    export_saved_model(shipped["model"], target)
    assert not (target / "stale.txt").exists() and (target / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_empty_representative_set_is_refused(shipped):
    with pytest.raises(ExportError, match=r"'toy'.*\(0, 8, 8, 1\).*N >= 1"):
        convert_tflite(shipped["saved"], np.zeros((0, 8, 8, 1), np.float32))


def test_a_converter_failure_names_the_model_and_the_op(tmp_path):
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Resizing(4, 4, interpolation="bicubic"), keras.layers.Flatten(),
         keras.layers.Dense(3)],
        name="bicubic_net",
    )
    saved = export_saved_model(model, tmp_path / "saved")
    with pytest.raises(ExportError) as caught:
        convert_tflite(saved, name="bicubic_net")
    message = str(caught.value)
    assert isinstance(caught.value, KdError) and "\n" not in message
    assert "'bicubic_net'" in message and "float32" in message and "ResizeBicubic" in message


def test_ops_left_in_float_make_the_int8_conversion_fail(tmp_path):
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(8), keras.layers.LayerNormalization(),
         keras.layers.Dense(3)],
        name="layernorm_net",
    )
    saved = export_saved_model(model, tmp_path / "layernorm_net")
    convert_tflite(saved)  # float32 is fine
    with pytest.raises(ExportError, match=r"'layernorm_net' is not fully int8.*NEG.*float32"):
        convert_tflite(saved, toy_images(16, seed=3)[0])


def test_inputs_that_do_not_fit_the_file_are_refused(shipped):
    path = shipped["folder"] / "int8.tflite"
    with pytest.raises(ExportError, match=r"int8\.tflite.*\(8, 8, 1\)"):
        evaluate_tflite(path, np.zeros((4, 7, 7, 1), np.float32), np.zeros(4, int))
    with pytest.raises(ExportError, match="missing"):
        evaluate_tflite(shipped["folder"] / "absent.tflite", shipped["x"], shipped["y"])
    with pytest.raises(ExportError, match="missing; export it first"):
        convert_tflite(shipped["folder"] / "absent")
