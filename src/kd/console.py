"""What a stage prints: TensorFlow's start-up notices filtered out of its standard error.

TensorFlow's C++ runtime writes a dozen lines to stderr at start-up before its own log level
applies, two of them at error level on a healthy CPU machine (cuInit failing where there is
no GPU driver, a tf.data attribute newer than the runtime). In `dvc repro`'s log they bury
the lines that matter. :func:`filter_startup_noise` drops exactly those known lines, at the
file-descriptor level (where C++ writes), and passes everything else through unchanged.
"""

import os
import re
import sys
import threading
from pathlib import Path

# Each pattern is a whole line known to be harmless on a healthy run; nothing else is dropped.
NOISE = [re.compile(pattern) for pattern in (
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"^I0000 .* port\.cc:\d+\] oneDNN custom operations are on\.",
    r"^I0000 .* cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine",
    r"^I0000 .* cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized",
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$",
    r"^E0000 .* node_def_util\.cc:\d+\] NodeDef mentions attribute use_unbounded_threadpool which is not in the op",
    r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$",  # LiteRT, running an exported file
)]
# Only where no NVIDIA driver is installed: on a GPU machine a failing cuInit is news.
NO_GPU_NOISE = re.compile(r"^E0000 .* cuda_platform\.cc:\d+\] failed call to cuInit")

_state = {}


def is_noise(line, gpu_driver=None):
    """True for a stderr line that :data:`NOISE` (or, without a GPU driver, a failing cuInit) covers."""
    line = line.rstrip("\n")
    if gpu_driver is None:
        gpu_driver = Path("/proc/driver/nvidia").exists()
    return any(p.search(line) for p in NOISE) or (not gpu_driver and bool(NO_GPU_NOISE.search(line)))


def filter_startup_noise():
    """Route this process's stderr (fd 2) through a filter thread until :func:`flush` or exit."""
    if _state or os.environ.get("KD_RAW_STDERR"):  # KD_RAW_STDERR=1 shows everything
        return
    gpu_driver = Path("/proc/driver/nvidia").exists()
    sys.stderr.flush()
    original = os.dup(2)
    reader, writer = os.pipe()
    os.dup2(writer, 2)
    os.close(writer)

    def forward():
        with os.fdopen(reader, "rb") as lines, os.fdopen(os.dup(original), "wb", buffering=0) as out:
            for line in lines:
                if not is_noise(line.decode(errors="replace"), gpu_driver):
                    out.write(line)

    thread = threading.Thread(target=forward, name="kd-stderr-filter", daemon=True)
    thread.start()
    _state.update(original=original, thread=thread)
    import atexit

    atexit.register(flush)


def flush():
    """Give fd 2 back to the real stderr and wait until every filtered line is written."""
    if not _state:
        return
    sys.stderr.flush()
    os.dup2(_state["original"], 2)  # closes the pipe's last writer: the thread reads to the end
    _state["thread"].join(timeout=5)
    os.close(_state["original"])
    _state.clear()


class Progress:
    """A line every ``every`` seconds of long work: done of total, the rate and the time left.

    For a log that DVC shows as it comes: one line per interval, never one per item; nothing
    at all for work that ends within the first interval.
    """

    def __init__(self, what, total, unit, every=10.0, clock=None):
        import time

        self.clock = clock or time.perf_counter
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.started = self.last = self.clock()

    def update(self, done):
        now = self.clock()
        if now - self.last < self.every or done <= 0:
            return
        self.last = now
        rate = done / (now - self.started)
        left = (self.total - done) / rate if rate > 0 else float("inf")
        print(f"{self.what}: {done:,} of {self.total:,} {self.unit} ({rate:,.0f}/s, {_duration(left)} left)",
              flush=True)

    def seconds(self):
        return self.clock() - self.started


def _duration(seconds):
    if seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
