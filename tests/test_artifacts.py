import keras
import numpy as np
import pytest

from kd.artifacts import atomic_path, load_model, save_model, write_json
from kd.errors import ArtifactError
from kd.models import build_model
from kd.params import parse_params
from kd.rows import NpyRows


def seeded_model(raw_params, seed=0):
    """The model a fresh stage process would build: same layer names, seeded weights."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    return build_model(parse_params(raw_params).model("ta"), (28, 28, 1), 10)


def test_equal_models_are_saved_as_identical_bytes(tmp_path, raw_params):
    # Two model objects with the same weights: .keras would differ by save time and object ids.
    model = seeded_model(raw_params)
    save_model(model, tmp_path / "a.keras")
    save_model(seeded_model(raw_params), tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    save_model(seeded_model(raw_params, seed=1), tmp_path / "c.keras")
    assert (tmp_path / "a.keras").read_bytes() != (tmp_path / "c.keras").read_bytes()
    loaded = load_model(tmp_path / "a.keras")
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.keras", "b.keras", "c.keras"]  # no temporaries left


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "metrics.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("{half")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_survives_a_failed_rewrite(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"accuracy": 0.9})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("{half")
            raise RuntimeError
    assert target.read_text() == '{\n  "accuracy": 0.9\n}\n'


def test_missing_and_corrupt_artifacts_are_named(tmp_path):
    with pytest.raises(ArtifactError, match="teacher 'ta' .*missing"):
        load_model(tmp_path / "ta.keras", "teacher 'ta'")
    (tmp_path / "ta.keras").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="teacher 'ta' .*ta.keras is not a Keras archive"):
        load_model(tmp_path / "ta.keras", "teacher 'ta'")
    with pytest.raises(ArtifactError, match="missing"):
        NpyRows(tmp_path / "ta.logits.npy", "logits")
    np.save(tmp_path / "ok.npy", np.ones((3, 2), np.float32))  # the bytes kd.rows.NpyWriter writes
    assert NpyRows(tmp_path / "ok.npy", "logits").shape == (3, 2)


def test_corrupt_logits_are_named(tmp_path):
    (tmp_path / "teacher.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ArtifactError, match="logits of teacher 'teacher' .*teacher.npy is not an .npy array"):
        NpyRows(tmp_path / "teacher.npy", "logits of teacher 'teacher'")


def test_a_model_carrying_code_is_not_loaded(tmp_path):
    # A Lambda layer would run code from the file; safe mode refuses to deserialize it.
    model = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)])
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(ArtifactError, match="cannot be loaded"):
        load_model(tmp_path / "lambda.keras")
