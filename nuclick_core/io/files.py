"""The package's one way to write a file so that it is either complete or absent, and to hash one.

Every output (instance tables, GeoJSON, label masks, reports, the model registry and cards,
training checkpoints, ONNX exports, demo downloads) goes through :func:`atomic_path`: the data is
written to a hidden temporary name beside the target, flushed to disk (fsync), renamed over the
target, and the folder's entry is synced too, so an interrupted job never leaves a file that
looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The caller writes the temporary file (with any library); on success it is fsynced and
    renamed over ``path``, on an exception it is removed and ``path`` is left as it was.

    Example
    -------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "figures.json"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("{}")
    >>> target.read_text()
    '{}'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # on disk before the rename makes it look finished
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (model files are tens of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json_object(path: Path | str, *, fix: str, error: type[Exception] = ValueError) -> dict:
    """The JSON object in ``path``; ``error`` naming the file and ``fix`` when the file is
    missing, is not valid JSON (or nests too deeply) or holds something other than an object."""
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise error(f"{path} does not exist; {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise error(f"{path} is not valid JSON ({exc}); {fix}") from None
    if not isinstance(value, dict):
        raise error(f"{path} must hold a JSON object, not {type(value).__name__}; {fix}")
    return value
