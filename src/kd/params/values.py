"""Checks of single values of params.yaml, each refusing a bad one with a ParamsError that names
its key as written (``distill.student.temperature``) and what was expected there."""

import math
import re

from kd.errors import ParamsError

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # what may become part of a file, folder and stage name


def _mapping(value, key):
    if not isinstance(value, dict):
        raise ParamsError(f"{key}: expected a mapping, found {type(value).__name__}")
    return value


def _keys(value, key, required=(), optional=()):
    """Check that mapping ``value`` has all ``required`` keys and nothing unknown."""
    _mapping(value, key)
    missing = [k for k in required if k not in value]
    if missing:
        raise ParamsError(f"{key}: missing key(s) {', '.join(missing)}")
    allowed = set(required) | set(optional)
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise ParamsError(
            f"{key}: unknown key(s) {', '.join(map(str, unknown))}; "
            f"expected {', '.join(list(required) + list(optional))}"
        )
    return value


def _integer(value, key, minimum, maximum=None, why=""):
    expected = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}{why}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamsError(f"{key}: expected {expected}, found {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ParamsError(f"{key}: expected {expected}, found {value}")
    return value


def _number(value, key, expected="a finite number", holds=None):
    """``value`` as a float: an int or a float (never a bool), finite, for which ``holds`` (if given) is
    true; else ``<key>: expected <expected>, found <value>`` (NaN and infinities are never accepted)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamsError(f"{key}: expected a number, found {value!r}")
    value = float(value)
    if not math.isfinite(value) or (holds is not None and not holds(value)):
        raise ParamsError(f"{key}: expected {expected}, found {value}")
    return value


def _choice(value, key, allowed):
    if value not in allowed:
        raise ParamsError(f"{key}: expected one of {', '.join(allowed)}, found {value!r}")
    return value


def _flag(value, key):
    if not isinstance(value, bool):
        raise ParamsError(f"{key}: expected true or false, found {value!r}")
    return value


def _height_width(value, key, expected):
    """``(height, width)`` from a list of two integers > 0; else ``<key>: expected <expected>, found <value>``."""
    if not (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ParamsError(f"{key}: expected {expected}, found {value!r}")
    return tuple(value)


def _name(value, key, what, becomes):
    """A name of a model, views or group: ``what`` (``model names``) and what it ``becomes`` (``file and stage``)
    say so in the message."""
    if not isinstance(value, str) or not NAME.match(value):
        raise ParamsError(f"{key}: {what} must start with a letter and hold only letters, digits and '_' "
                          f"(they become {becomes} names)")
    return value


def _model(name, key, models):
    """``name``, which must be one of ``models`` (a teacher, a model to export)."""
    if name not in models:
        raise ParamsError(f"{key}: {name!r} is not a model (models: {', '.join(map(str, models))})")
    return name


def _class_config(value, key):
    """A ``{class_name, config}`` mapping, the format Keras serializes objects in."""
    _keys(value, key, required=("class_name",), optional=("config",))
    if not isinstance(value["class_name"], str):
        raise ParamsError(f"{key}.class_name: expected a Keras class name, found {value['class_name']!r}")
    if "config" in value:
        _mapping(value["config"], f"{key}.config")
    return value
