"""Errors that describe bad input, and the runner that turns them into a clean exit.

An input error (a wrong key in params.yaml, a tampered data file, a missing teacher)
is the user's to fix, so it is reported as one or two lines naming the key or file,
what was found and what was expected, never as a traceback. Anything else is a bug
and keeps its traceback.
"""

import contextlib
import os
import signal
import sys


class KdError(Exception):
    """Base class of errors caused by the user's input, reported without traceback."""


class ParamsError(KdError):
    """params.yaml holds a value that cannot work."""


class DataError(KdError):
    """A data source is missing, corrupt, or not what the models can take."""


class ArtifactError(KdError):
    """A file written by an earlier stage is missing, corrupt or inconsistent."""


class TrainingError(KdError):
    """Training diverged (the loss became NaN or infinite)."""


def run_stage(main, argv=None):
    """Call ``main(argv)``; report a ``KdError`` as ``error: ...`` and exit with status 1.

    SIGTERM (what ``kill``, CI runners and ``dvc queue kill`` send) is turned into an
    exit that unwinds the stack, so temporary files are removed and no half-written output
    is left behind. During training the stop waits for the end of the current batch (see
    :func:`deferred_termination`): an exception raised from a signal handler in the middle
    of a TensorFlow call can corrupt its memory.
    """
    from kd.console import filter_startup_noise, flush

    filter_startup_noise()
    signal.signal(signal.SIGTERM, _stop_on_signal)
    try:
        main(argv)
    except KdError as error:
        print(f"error: {error}", file=sys.stderr)
        flush()
        sys.exit(1)
    except Terminated as stop:
        # The stack has unwound and temporary files are gone. Exit now: a normal interpreter
        # shutdown with TensorFlow's threads still running can abort the process instead.
        print(f"stopped by signal {stop.signum}; outputs being written were discarded", file=sys.stderr)
        sys.stdout.flush()
        flush()
        os._exit(128 + stop.signum)


class Terminated(BaseException):
    """Raised in the main thread when the stage receives SIGTERM."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


_termination = {"deferred": False, "signum": None}


@contextlib.contextmanager
def deferred_termination():
    """Within this block SIGTERM only records a request (see :func:`termination_requested`);
    the request is acted on when the block ends."""
    _termination["deferred"] = True
    try:
        yield
    finally:
        _termination["deferred"] = False
    if _termination["signum"] is not None:
        raise Terminated(_termination["signum"])


def termination_requested():
    """True once SIGTERM arrived inside :func:`deferred_termination`."""
    return _termination["signum"] is not None


def _stop_on_signal(signum, frame):
    if _termination["deferred"]:
        _termination["signum"] = signum
    else:
        raise Terminated(signum)
