"""The one atomic writer and the file hash."""

from __future__ import annotations

import hashlib

import pytest

from nuclick_core.io.files import (
    atomic_path,
    sha256_bytes,
    sha256_file,
    write_bytes_atomic,
    write_text_atomic,
)


def test_atomic_path_replaces_only_when_the_block_succeeds(tmp_path) -> None:
    target = tmp_path / "sub" / "out.json"
    write_text_atomic(target, "first")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("interrupted")
    assert target.read_text() == "first"  # the old file survives a failed write
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]  # no temporary left
    write_bytes_atomic(target, b"second")
    assert target.read_bytes() == b"second"


def test_a_block_that_writes_nothing_leaves_no_file(tmp_path) -> None:
    target = tmp_path / "never.txt"
    with pytest.raises(FileNotFoundError), atomic_path(target):
        pass  # the temporary file was never created: nothing to rename
    assert not target.exists()


def test_sha256_of_a_file_and_bytes(tmp_path) -> None:
    data = bytes(range(256)) * 5000  # over the 1 MiB read chunk
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == sha256_bytes(data) == hashlib.sha256(data).hexdigest()


def test_temporaries_of_killed_writers_are_removed_on_the_next_write(tmp_path) -> None:
    """#13 item 8: a kill -9 left .tmp files that were never removed."""
    import os
    import subprocess

    from nuclick_core.io import files

    target = tmp_path / "out.parquet"
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    stale = tmp_path / f".out.parquet.{files._HOST}.{dead.pid}.tmp"
    live = tmp_path / f".out.parquet.{files._HOST}.{os.getppid()}.tmp"  # a running process
    other_host = tmp_path / f".out.parquet.otherhost.{dead.pid}.tmp"
    for path in (stale, live, other_host):
        path.write_text("partial")
    write_text_atomic(target, "done")
    assert target.read_text() == "done"
    assert not stale.exists() and live.exists() and other_host.exists()
