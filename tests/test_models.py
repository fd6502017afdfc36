import pytest

from kd.errors import ParamsError
from kd.models import build_model
from kd.params import parse_params


@pytest.mark.parametrize(
    "name, expected_params", [("teacher", 1_011_466), ("ta", 501_834), ("student", 1_238_730)]
)
def test_default_architectures_are_seed_002s(raw_params, name, expected_params):
    spec = parse_params(raw_params).model(name)
    model = build_model(spec, (28, 28, 1), 10)
    assert model.count_params() == expected_params
    assert model.output_shape == (None, 10)
    assert model.layers[-1].get_config()["activation"] == "linear"  # logits


def test_output_size_and_input_shape_come_from_the_data(raw_params):
    spec = parse_params(raw_params).model("ta")
    model = build_model(spec, (32, 32, 3), 7)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 7)


def test_unknown_layer_class_names_model_and_position(raw_params):
    raw_params["architectures"]["ta_cnn"][2]["class_name"] = "Conv2DD"
    spec = parse_params(raw_params).model("ta")
    with pytest.raises(ParamsError, match=r"architectures\.ta_cnn\[2\] \(model 'ta', Conv2DD\)"):
        build_model(spec, (28, 28, 1), 10)


def test_layer_config_keras_rejects_names_model_and_position(raw_params):
    raw_params["architectures"]["fc_student"][1]["config"] = {"unitz": 784}
    spec = parse_params(raw_params).model("student")
    with pytest.raises(ParamsError, match=r"architectures\.fc_student\[1\] \(model 'student', Dense\)"):
        build_model(spec, (28, 28, 1), 10)


def test_images_too_small_for_the_architecture_name_the_layer(raw_params):
    spec = parse_params(raw_params).model("teacher")
    with pytest.raises(ParamsError, match=r"architectures\.teacher_cnn\[2\] \(model 'teacher', Conv2D\): the layer cannot take its input"):
        build_model(spec, (4, 4, 1), 10)


def test_a_bad_augmentation_or_schedule_is_refused_naming_the_model(raw_params):
    from kd.models import build_augmentation, build_optimizer

    raw_params["augmentations"]["jitter"][0]["class_name"] = "RandomJitter"
    raw_params["schedules"]["cosine"]["config"]["warmup"] = 3
    raw_params["distill"]["student"].update(augmentation="jitter", schedule="cosine")
    spec = parse_params(raw_params).model("student")
    with pytest.raises(ParamsError, match=r"augmentation of model 'student', layer 0 \(RandomJitter\): Keras has no layer"):
        build_augmentation(spec, (28, 28, 1), seed=0)
    with pytest.raises(ParamsError, match=r"schedule of model 'student': Keras rejected"):
        build_optimizer(spec, steps_per_epoch=10)


def test_augmentation_layers_are_seeded_from_params(raw_params):
    from kd.models import build_augmentation

    raw_params["distill"]["student"]["augmentation"] = "jitter"
    augment = build_augmentation(parse_params(raw_params).model("student"), (28, 28, 1), seed=7)
    assert augment.layers[0].get_config()["seed"] == 7
