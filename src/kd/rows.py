"""Rows of ``.npy`` files on disk, read and written in pieces: memory bounded by a batch, not a file.

kd's splits (``data/<split>/x.npy``), teacher logits (``logits/<model>.npy``) and views are
plain ``.npy`` files, which anyone can open memory-mapped (``np.load(path, mmap_mode="r")``).
kd reads them with positioned reads (``os.preadv``) into arrays it owns instead of through a
memory map: the pages of a map that a process has touched count in its resident memory, so a
shuffled epoch over a mapped 3.5 GB split would show a 3.5 GB process. Read this way, the
file's pages stay in the kernel's page cache (the next epoch reads them from memory just as
fast), and the process holds one batch at a time.

:class:`NpyWriter` writes an ``.npy`` of known shape as its rows arrive; its bytes are those
:func:`numpy.save` writes for the whole array, so a file written in pieces hashes the same.
"""

import os
from pathlib import Path

import numpy as np

from kd.errors import ArtifactError


class NpyRows:
    """The rows of a C-ordered ``.npy`` file: ``rows[indices]`` and ``rows[start:stop]`` read from disk.

    ``what`` names the file in errors ("logits of teacher 'ta'"); ``remedy`` says what to rerun.
    A file shorter than its header says (truncated) or not an ``.npy`` is refused on opening.
    """

    def __init__(self, path, what="array", remedy="rerun the stage that writes it"):
        self.path = Path(path)
        self.what = what
        try:
            with open(self.path, "rb") as file:
                version = np.lib.format.read_magic(file)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                    else np.lib.format.read_array_header_2_0
                shape, fortran_order, dtype = read_header(file)
                self.offset = file.tell()
        except FileNotFoundError:
            raise ArtifactError(f"{what} {self.path} is missing; {remedy}") from None
        except (OSError, ValueError, SyntaxError) as error:
            raise ArtifactError(f"{what} {self.path} is not an .npy array ({error}); {remedy}") from None
        if fortran_order or dtype.hasobject or not shape:
            raise ArtifactError(f"{what} {self.path} is not a C-ordered array of numbers; {remedy}")
        self.shape, self.dtype = tuple(shape), dtype
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        expected = self.offset + self.row_bytes * shape[0]
        size = self.path.stat().st_size
        if size != expected:
            raise ArtifactError(f"{what} {self.path} holds {size:,} bytes but its header promises {expected:,} "
                                f"({shape} {dtype}): truncated or damaged; {remedy}")
        self._fd = None
        self._pid = None

    @classmethod
    def of_raw(cls, path, shape, dtype, what="array"):
        """The rows of a headerless file of C-ordered ``shape`` and ``dtype`` (a stage's own scratch file)."""
        rows = cls.__new__(cls)
        rows.path, rows.what, rows.offset = Path(path), what, 0
        rows.shape, rows.dtype = tuple(shape), np.dtype(dtype)
        rows.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * rows.dtype.itemsize
        rows._fd = rows._pid = None
        return rows

    def __len__(self):
        return self.shape[0]

    @property
    def row_shape(self):
        return self.shape[1:]

    def __getitem__(self, key):
        """Rows by a slice (contiguous, one read) or by an array of indices (in that order)."""
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self[np.arange(start, stop, step)]
            out = np.empty((max(stop - start, 0),) + self.row_shape, self.dtype)
            if len(out):
                self._read_into(out, self.offset + start * self.row_bytes)
            return out
        indices = np.asarray(key, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"{self.path}: row index out of 0..{len(self) - 1}")
        out = np.empty((indices.size,) + self.row_shape, self.dtype)
        if not indices.size:
            return out
        if np.all(np.diff(indices) == 1):  # a run: one read
            self._read_into(out, self.offset + int(indices[0]) * self.row_bytes)
            return out
        fd = self._descriptor()
        flat = out.reshape(indices.size, -1).view(np.uint8)
        for position, index in enumerate(indices.tolist()):
            if os.preadv(fd, [flat[position]], self.offset + index * self.row_bytes) != self.row_bytes:
                raise ArtifactError(f"{self.what} {self.path} became shorter while being read; rerun its stage")
        return out

    def _read_into(self, out, offset):
        view = memoryview(out.reshape(-1).view(np.uint8))
        fd = self._descriptor()
        while len(view):
            count = os.preadv(fd, [view], offset)
            if count == 0:
                raise ArtifactError(f"{self.what} {self.path} became shorter while being read; rerun its stage")
            view, offset = view[count:], offset + count

    def _descriptor(self):
        # One descriptor per process (readers are shared with tf.data's threads; a fork gets its own).
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def __del__(self):
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)

    def __getstate__(self):  # picklable (process pools): the descriptor is reopened on use
        return {**self.__dict__, "_fd": None, "_pid": None}


class NpyWriter:
    """Write an ``.npy`` of ``shape`` and ``dtype`` row block by row block to an open binary ``file``.

    The header is written first, so the rows must add up to ``shape[0]``; :meth:`close` checks it.
    The bytes equal :func:`numpy.save`'s for the whole array (format version 1.0).
    """

    def __init__(self, file, shape, dtype):
        self.file, self.shape, self.dtype = file, tuple(int(s) for s in shape), np.dtype(dtype)
        self.written = 0
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_1_0(file, header)

    def write(self, rows):
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or self.written + len(rows) > self.shape[0]:
            raise ValueError(f"rows {rows.shape} do not fit an array of {self.shape} with {self.written} written")
        self.file.write(rows.data)
        self.written += len(rows)

    def close(self):
        if self.written != self.shape[0]:
            raise ValueError(f"{self.written} rows written of {self.shape[0]}")
