"""Nothing stale: remove what models no longer in params.yaml left behind.

DVC does not delete the outputs of a stage that left ``dvc.yaml`` (a model removed from
``train:`` or ``distill:`` takes its templated stage with it), nor its ``dvc.lock`` entry:
its model, logits, curves and timing would stay, ``dvc metrics show`` would still list
them, and the evaluate stage would hash them as dependencies. The evaluate stage reruns
whenever the set of models changes (it depends on ``train`` and ``distill``), and, as
the pipeline's last stage, calls :func:`remove_stale`. DVC reads ``dvc.lock`` afresh
before writing each stage's entry, so entries removed here stay removed.
"""

import shutil
from pathlib import Path

import yaml

from kd.stage_kinds import TEMPLATED



def remove_stale(params, models="models", logits="logits", curves="dvclive", timings="timings", exported="exported",
                 lock="dvc.lock", mutual="mutual"):
    """Delete the outputs and ``dvc.lock`` entries of models and stages no longer in ``params``.

    Returns what was removed, as paths and stage names, for the log.
    """
    from kd.artifacts import atomic_path

    names = set(params.models)
    stages = ({spec.stage for spec in params.models.values()} | {f"export@{name}" for name in params.export.models}
              | {views.stage for views in (params.views or {}).values()}
              | {group.stage for group in (params.mutual or {}).values()})
    removed = []
    for folder, pattern in ((models, "*.keras"), (logits, "*.npy")):
        for path in sorted(Path(folder).glob(pattern)):
            if path.stem not in names:
                path.unlink()
                removed.append(str(path))
    for path in sorted(Path(curves).glob("*")):
        if path.is_dir() and path.name not in names:
            shutil.rmtree(path)
            removed.append(f"{path}/")
    for path in sorted((Path(logits) / "views").glob("*")):
        if path.is_dir() and path.name not in (params.views or {}):
            shutil.rmtree(path)
            removed.append(f"{path}/")
    for path in sorted(Path(mutual).glob("*")):
        if path.is_dir() and path.name not in (params.mutual or {}):
            shutil.rmtree(path)
            removed.append(f"{path}/")
    for path in sorted(Path(exported).glob("*")):
        if path.is_dir() and path.name not in params.export.models:
            shutil.rmtree(path)
            removed.append(f"{path}/")
    for path in sorted(Path(timings).glob("*@*.json")):
        if path.stem.split("@", 1)[0] in TEMPLATED and path.stem not in stages:
            path.unlink()
            removed.append(str(path))
    lock = Path(lock)
    if lock.is_file():
        content = yaml.safe_load(lock.read_text()) or {}
        entries = content.get("stages") or {}
        stale = [name for name in entries if "@" in name and name.split("@", 1)[0] in TEMPLATED and name not in stages]
        if stale:
            for name in stale:
                del entries[name]
            with atomic_path(lock) as temporary:
                temporary.write_text(yaml.safe_dump(content, sort_keys=False))
            removed += [f"{lock}: {name}" for name in stale]
    return removed
