"""Checks that span models: names and collisions, teacher chains (every teacher a model, no cycle,
extra teachers above the first), the layers feature terms name, the views' teachers, and born-again
generations (one entry written for k models, which DVC cannot make stages of)."""

from kd.errors import ParamsError
from kd.params.model_sections import _parse_model
from kd.params.values import _flag, _integer, _model, _name
from kd.stage_kinds import MODEL_SECTIONS

MAX_GENERATIONS = 100  # born-again chains are a few generations long; each one is trained in turn


def _check_new_model(name, key, models):
    """The name of a model entry: a valid name, and none of ``models`` (those parsed so far)."""
    _name(name, key, "model names", "file and stage")
    if name in models:
        raise ParamsError(f"{key}: model {name!r} is defined twice (in train, distill or pretrained)")


def _check_views(views, models):
    """Each views' teacher is a model, and no views share a model's name."""
    for spec in views.values():
        _model(spec.teacher, f"views.{spec.name}.teacher", models)
        if spec.name in models:
            raise ParamsError(f"views.{spec.name}: the name is also a model's; give the views their own name")


def _check_chains(models):
    """Every teacher must be a model, and following teachers must end at a teacher-less one."""
    for name, spec in models.items():
        seen = [name]
        while spec.teacher is not None:
            _model(spec.teacher, f"distill.{spec.name}.teacher", models)
            if spec.teacher in seen:
                cycle = " -> ".join(seen + [spec.teacher])
                raise ParamsError(f"distill.{name}.teacher: the teacher chain has a cycle: {cycle}")
            seen.append(spec.teacher)
            spec = models[spec.teacher]
    for name, spec in models.items():
        if spec.distillation is None:
            continue
        chain, above = [], models[spec.teacher]
        while above.teacher is not None:
            chain.append(above.teacher)
            above = models[above.teacher]
        for other, _ in spec.distillation.teachers[1:]:
            if other not in chain:
                raise ParamsError(
                    f"distill.{name}.teachers: {other!r} is not above {spec.teacher!r} in its teacher chain "
                    f"({' -> '.join([spec.teacher] + chain)}); dvc.yaml gives a stage one teacher edge (DVC cannot "
                    "template a list of dependencies), so other teachers must come before it in the chain"
                )


def _check_feature_layers(models):
    """Layers that feature terms name must exist in the student's and the teacher's architectures."""
    from kd.models import layer_names

    for spec in models.values():
        if spec.distillation is None:
            continue
        teacher = models[spec.teacher]
        for term, _ in spec.distillation.loss:
            if not term.features:
                continue
            for option, model, names in (("student_layer", spec, term.student_layers),
                                         ("teacher_layer", teacher, term.teacher_layers)):
                if not model.layers:  # an application or a file: its layers are checked when it is built or loaded
                    continue
                known = layer_names(model.layers)
                missing = [name for name in names if name not in known]
                if missing:
                    raise ParamsError(
                        f"{term.where}.{option}: {', '.join(map(repr, missing))} is not a layer of architecture "
                        f"{model.architecture} (model {model.name!r}); its layers: {', '.join(known)} "
                        "(name a layer with `name` in its config)"
                    )


def _refuse_unexpanded_generations(entries, models, defaults, named, raw):
    """Born-again generations are k models, so k params entries (DVC makes one stage per entry).

    The entry is checked first, every key as a distilled model's, so that the entries `make generations`
    writes are valid and a bad value is named as the user wrote it (``distill.born.temperature``).
    """
    for name, entry in entries.items():
        if isinstance(entry, dict) and "generations" in entry:
            key = f"distill.{name}"
            expanded = list(expand_generations({name: entry}))  # the count and options checked
            base = {k: v for k, v in entry.items() if k not in ("generations", "ensemble")}
            _parse_model(name, key, base, defaults, named, distilled=True)
            known = [model for section in MODEL_SECTIONS for model in (raw.get(section) or {})]
            _model(base["teacher"], f"{key}.teacher", [model for model in known if model != name])
            for generation in expanded:
                if generation in models or generation in entries:
                    raise ParamsError(f"distill.{name}.generations: generation {generation!r} would collide with "
                                      f"model {generation!r}; rename one of them")
            raise ParamsError(f"distill.{name}.generations: {len(expanded)} generation(s) are {len(expanded)} models, "
                              f"each a stage, and DVC makes one stage per params entry: run `make generations` to "
                              f"write {', '.join(expanded)} into params.yaml")


def expand_generations(entries, section="distill"):
    """``entries`` (a ``distill:`` mapping) with each ``generations: k`` entry replaced by its chain
    ``<name>_g1`` … ``<name>_gk`` (see tools/generations.py); other entries unchanged, in order."""
    expanded = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or "generations" not in entry:
            expanded[name] = entry
            continue
        key = f"{section}.{name}"
        count = _integer(entry["generations"], f"{key}.generations", minimum=1, maximum=MAX_GENERATIONS,
                         why=" (each generation is a model and a stage)")
        if "teacher" not in entry:
            raise ParamsError(f"{key}: missing key(s) teacher (the first generation's)")
        ensemble = _flag(entry.get("ensemble", False), f"{key}.ensemble")
        if "teachers" in entry:
            raise ParamsError(f"{key}.teachers: generations teach each other; give one teacher (the first "
                              "generation's), and ensemble: true for the last to learn from all earlier ones")
        base = {k: v for k, v in entry.items() if k not in ("generations", "ensemble")}
        names = [f"{name}_g{index}" for index in range(1, count + 1)]
        for generation in names:
            if generation in entries:
                raise ParamsError(f"{key}.generations: generation {generation!r} would collide with "
                                  f"{section}.{generation}; rename one of them")
        for index, generation in enumerate(names):
            expanded[generation] = {**base, "teacher": base["teacher"] if index == 0 else names[index - 1]}
        if ensemble and count > 1:
            expanded[names[-1]]["teachers"] = list(reversed(names[:-1]))
    return expanded
