"""Write stage outputs atomically and byte-stably; load them safely.

Two properties DVC needs from every output:

- **Atomic.** A stage that fails or is killed must not leave a half-written model,
  logits or metrics file that a later step could take for a result. Every writer
  here writes to a temporary name in the target's folder and renames it into place
  only when the file is complete.
- **Byte-stable.** DVC decides what to rerun from file hashes. ``.keras`` archives embed
  the time they were written, so identical content would get a new hash on every run and
  invalidate everything downstream; their config also numbers shared objects by their
  Python ``id()``. Archives are rewritten here with fixed timestamps, without
  ``date_saved``, and with shared objects numbered in order. (Arrays are ``.npy`` files,
  whose bytes depend on the array alone, written in pieces by kd.rows.)
"""

import contextlib
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

from kd.errors import ArtifactError

FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; move it onto ``path`` if the block succeeds.

    The temporary name keeps ``path``'s suffix (Keras checks it) and starts with a dot.
    On any exception, KeyboardInterrupt included, the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path)
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(folder):
    """Yield a temporary folder beside ``folder``; swap it in for ``folder`` if the block succeeds.

    On any exception the temporary folder is removed and ``folder`` is left as it was.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(folder)
    temporary = folder.with_name(f".tmp-{os.getpid()}-{folder.name}")
    previous = folder.with_name(f".old-{os.getpid()}-{folder.name}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        yield temporary
        if folder.exists():
            os.replace(folder, previous)
        os.replace(temporary, folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.rmtree(previous, ignore_errors=True)


ORPHAN = re.compile(r"^\.(?:tmp|old|keras-\.tmp)-(\d+)-(.+)$")  # the names atomic_path and atomic_directory use


def remove_orphans(path):
    """Remove what a killed writer of ``path`` left beside it: its temporary file or folder (``.tmp-<pid>-``),
    or the previous output it had moved aside (``.old-<pid>-``), for each ``<pid>`` that no longer runs.

    SIGKILL (the OOM killer, ``kill -9``, a lost machine) stops a stage with no chance to clean up; what
    it was writing never reached ``path``, but would stay beside it, taking disk space, until the rerun.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return
    for entry in path.parent.iterdir():
        match = ORPHAN.match(entry.name)
        if not match or match.group(2) != path.name or _running(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _running(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (EPERM): running
        return True
    return True


def write_json(path, payload):
    """Write ``payload`` as indented JSON with sorted keys, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def save_model(model, path):
    """Save a Keras model to ``path`` (``.keras``) with content-determined bytes, atomically."""
    path = Path(path)
    with atomic_path(path) as temporary:
        keras_archive = temporary.with_name(f".keras-{temporary.name}")
        try:
            model.save(keras_archive)
            _rewrite_stably(keras_archive, temporary)
        finally:
            keras_archive.unlink(missing_ok=True)


def load_model(path, what="model"):
    """Load a ``.keras`` model with Keras's safe mode on (no code from the file runs)."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{what} {path} is missing; run the stage that trains it")
    if not zipfile.is_zipfile(path):  # Keras would report "file not found" for it
        raise ArtifactError(f"{what} {path} is not a Keras archive (a .keras file is a zip archive; this one is "
                            "not: damaged, or another kind of file); rerun the stage that writes it")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged archive
        raise ArtifactError(f"{what} {path} cannot be loaded (corrupt or not a .keras file): {error}") from None


def _rewrite_stably(source, target):
    """Copy zip ``source`` to ``target`` with fixed timestamps and no ``date_saved``."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as stable:
        for name in sorted(original.namelist()):
            content = original.read(name)
            if name == "metadata.json":
                metadata = json.loads(content)
                metadata.pop("date_saved", None)
                content = json.dumps(metadata, sort_keys=True).encode()
            elif name == "config.json":
                content = json.dumps(_renumber_shared_objects(json.loads(content), {})).encode()
            stable.writestr(zipfile.ZipInfo(name, FIXED_ZIP_TIME), content, zipfile.ZIP_DEFLATED)


def _renumber_shared_objects(node, numbers):
    """Replace each ``shared_object_id`` (a memory address) by its order of first appearance."""
    if isinstance(node, dict):
        return {
            key: numbers.setdefault(value, len(numbers) + 1) if key == "shared_object_id"
            else _renumber_shared_objects(value, numbers)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renumber_shared_objects(item, numbers) for item in node]
    return node
