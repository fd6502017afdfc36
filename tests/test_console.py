"""TensorFlow's start-up notices are filtered from a stage's stderr; everything else passes."""

import subprocess
import sys

from kd.console import is_noise

HEALTHY_CPU_START = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795473806.188477    6593 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1795473806.188796    6593 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1795473465.097948    2667 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX512_FP16 AVX_VNNI FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1795473808.293496    6593 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
E0000 00:00:1795473812.703914    6593 node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset; signature=...> This may be expected if your graph generating binary is newer  than this binary. Unknown attributes will be ignored. NodeDef: {{node ParallelMapDatasetV2/_14}}
"""


def test_the_known_start_up_lines_are_noise_and_nothing_else():
    assert all(is_noise(line, gpu_driver=False) for line in HEALTHY_CPU_START.splitlines())
    # On a machine with a GPU driver, a failing cuInit is news.
    assert not is_noise(HEALTHY_CPU_START.splitlines()[5], gpu_driver=True)
    for line in ("error: training.epochs: expected an integer >= 1, found '12'",
                 "E0000 00:00:1 123 some_kernel.cc:1] OOM when allocating tensor",
                 "W0000 00:00:1 123 loss.cc:1] something else TensorFlow warns about",
                 "Traceback (most recent call last):"):
        assert not is_noise(line, gpu_driver=False)


def test_a_stage_prints_no_start_up_noise_but_its_errors(tmp_path):
    script = (
        "import sys\n"
        "from kd.errors import ParamsError, run_stage\n"
        "def main(argv):\n"
        "    import tensorflow as tf\n"
        "    tf.constant(1.0) + 1\n"
        "    print('E0000 00:00:1 1 other.cc:1] a real error line', file=sys.stderr)\n"
        "    raise ParamsError('data.limit: expected an integer >= 2, found 1')\n"
        "run_stage(main)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines == ["E0000 00:00:1 1 other.cc:1] a real error line",
                     "error: data.limit: expected an integer >= 2, found 1"], result.stderr
