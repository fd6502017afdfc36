"""The kinds of DVC stage, one row each: where their names, scripts and params sections are written.

dvc.yaml runs each kind with a params section once per entry of that section, as
``<kind>@<entry>``. Params validation (which sections hold models, and in what order they
are read), pruning (which stages a removed entry leaves behind) and the training stages read
the kinds from here, and tests/test_dvc_yaml.py checks dvc.yaml against them. A new kind is a
row here, its script under stages/, its entry in dvc.yaml and its section's parser in kd.params.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class StageKind:
    name: str  # as dvc.yaml names the stage: <name>, or <name>@<entry> for a kind with a section
    script: str
    section: str | None  # the params.yaml section whose entries it runs over; None: one stage
    makes_models: bool  # its entries are models (models/<entry>.keras, logits/<entry>.npy)


KINDS = {kind.name: kind for kind in (
    StageKind("prepare", "stages/prepare.py", None, False),
    StageKind("pretrained", "stages/pretrained.py", "pretrained", True),
    StageKind("train", "stages/train.py", "train", True),
    StageKind("mutual", "stages/mutual.py", "mutual", False),
    StageKind("peer", "stages/peer.py", "peers", True),
    StageKind("distill", "stages/distill.py", "distill", True),
    StageKind("views", "stages/views.py", "views", False),
    StageKind("distill_views", "stages/distill.py", "distill_views", True),
    StageKind("export", "stages/export.py", "export.models", False),
    StageKind("evaluate", "stages/evaluate.py", None, False),
)}
TEMPLATED = tuple(name for name, kind in KINDS.items() if kind.section is not None)  # stages named <kind>@<entry>
MODEL_SECTIONS = tuple(kind.section for kind in KINDS.values() if kind.makes_models)  # the order models are read in
