"""Stage train: train one model of params.yaml's `train:` on the labels alone (a teacher, a control).

Writes the model (models/<name>.keras), its logits on the training split (logits/<name>.npy),
which the models it teaches learn from, and its per-epoch curves (dvclive/<name>/).
"""

import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # the stage's wall time, imports included
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this tree's kd (docs/layout.md: The pipeline)

from kd.errors import run_stage  # noqa: E402
from kd.training_stage import arguments, model_to_train, train_and_write  # noqa: E402


def main(argv=None):
    args = arguments(__doc__, argv)
    params, spec = model_to_train(args, distilled=False)
    train_and_write(params, spec, args, STARTED)


if __name__ == "__main__":
    run_stage(main)
