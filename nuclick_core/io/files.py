"""The package's one way to write a file so that it is either complete or absent, and to hash one.

Every output (instance tables, GeoJSON, label masks, reports, the model registry and cards,
training checkpoints, ONNX exports, demo downloads) goes through :func:`atomic_path`: the data is
written to a hidden temporary name beside the target, flushed to disk (fsync), renamed over the
target, and the folder's entry is synced too, so an interrupted job never leaves a file that
looks finished.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nuclick_core.errors import OutputError

_HOST = socket.gethostname().replace(".", "_") or "host"


def _remove_stale_temporaries(path: Path) -> None:
    """Remove temporaries of ``path`` left by a killed writer: those of this host whose process
    is gone (a temporary of another host, on a shared file system, is left alone)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.{_HOST}.*.tmp"):
        pid = tmp.name[len(f".{path.name}.{_HOST}.") : -len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


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
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.tmp")
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


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_outputs(
    outputs: dict[str, Path | str | None], inputs: dict[str, Path | str | None]
) -> None:
    """Before any work: every output file (keyed by its flag) can be written where it is asked
    for, is none of the inputs and no other output. A whole-slide run that would fail at its
    last step, or overwrite the user's slide or marks, stops here instead, in a second.

    Raises OutputError naming the flag, the path and the fix.
    """
    outs = {flag: Path(p) for flag, p in outputs.items() if p}
    ins = {flag: Path(p) for flag, p in inputs.items() if p}
    for flag, path in outs.items():
        for other, source in ins.items():
            if _same_file(path, source):
                raise OutputError(
                    f"{flag} {path} is the {other} input: writing it would destroy the input; "
                    "choose another output path"
                )
        for other, second in outs.items():
            if other < flag and _same_file(path, second):
                raise OutputError(
                    f"{flag} and {other} are the same file ({path}): one would replace the "
                    "other; give each its own path"
                )
        if path.is_dir():
            raise OutputError(f"{flag} {path} is a folder; give a file path inside it")
        ancestor = path.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise OutputError(
                f"{flag} {path}: {ancestor} is a file, not a folder, so nothing can be written "
                "under it; choose another output path"
            )
        # a real write, not os.access (root, ACLs and read-only mounts all answer truly), in the
        # nearest folder that exists, so a run that fails later leaves no empty folders behind
        probe = ancestor / f".{path.name}.{os.getpid()}.probe"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise OutputError(
                f"{flag} {path} cannot be written ({exc.strerror or exc}); choose a folder "
                "you can write to"
            ) from exc
