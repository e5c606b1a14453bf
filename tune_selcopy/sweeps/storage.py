"""Where sweeps live: checks made before a sweep starts (reachable, writable, room
enough), the exclusive claim of a sweep's folder, and telling storage failures that a
retry cannot fix from those it can.

Storage is a local folder or a URI that pyarrow's filesystems open (``file://``,
``s3://``, ``gs://``); paths are resolved by ``uris.resolve``.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import pyarrow.fs as pafs

from tune_selcopy.errors import UserError, one_line
from tune_selcopy.uris import make_dirs, resolve

T = TypeVar("T")

PROBE_TIMEOUT_S = 10.0  # an object store without network or credentials can hang for minutes
CLAIM_SETTLE_S = 1.0  # object stores: how long a competing claim has to show up
CLAIM_STALE_S = 300.0  # a claim marker this old belongs to a claimant that died before writing

# Failures a retry cannot fix: the disk is full, or we may not write there.
FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})
# pyarrow's filesystems often raise a plain OSError whose errno is unset; their messages
# carry the C library's text (local) or the store's error name (S3, GCS).
FATAL_MESSAGES = (
    "no space left on device",
    "disk quota exceeded",
    "permission denied",
    "read-only file system",
    "access denied",
    "accessdenied",
    "forbidden",
)


class StorageError(UserError):
    """Storage that a retry cannot fix: full, read-only, or not ours to write."""


class FolderTaken(UserError):
    """The folder a sweep would claim holds something already."""


def fatal_cause(
    exc: BaseException, ends: tuple[type[UserError], ...] = (StorageError,)
) -> BaseException | None:
    """The storage failure that a retry cannot fix (see ``FATAL_ERRNOS`` and
    ``FATAL_MESSAGES``), or an error of the kinds ``ends``, in ``exc`` or the exceptions it
    was raised from; None if none."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ends):
            return current
        if isinstance(current, OSError) and (
            current.errno in FATAL_ERRNOS or any(text in str(current).lower() for text in FATAL_MESSAGES)
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


def within(seconds: float, what: str, call: Callable[[], T]) -> T:
    """``call()`` in a daemon thread; ``UserError`` naming ``what`` if it takes longer.

    Some failures hang instead of raising (an object store without network retries its
    credential lookup for minutes); the thread is left behind, the command ends.
    """
    outcome: list = []

    def target() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome.append((False, exc))

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        raise UserError(f"{what} did not answer within {seconds:g} s (no network, or no credentials?)")
    ok, value = outcome[0]
    if ok:
        return value
    raise value


def check_writable(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Create folder ``uri`` if needed and write and delete a small file in it: what a
    sweep does there, with the permissions a sweep needs (``uris.make_dirs``).

    ``UserError`` (one line) when that fails or does not finish within ``timeout_s``.
    """

    def probe() -> None:
        fs, path = resolve(uri)  # in the time limit: an S3 URI without region asks the network for it
        make_dirs(fs, path)
        probe_file = posixpath.join(path, f".write-probe-{uuid.uuid4().hex}")
        with fs.open_output_stream(probe_file) as out:
            out.write(b"ok")
        fs.delete_file(probe_file)

    try:
        within(timeout_s, f"storage {uri}", probe)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here means "not writable"
        raise UserError(f"storage {uri} is not writable: {one_line(exc, 300)}") from None


def free_bytes(uri: str) -> int | None:
    """Free bytes where ``uri`` lives, for local folders; None where that is unknown."""
    fs, path = resolve(uri)
    if not isinstance(fs, pafs.LocalFileSystem):
        return None
    while not os.path.exists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def check_room(uri: str, needed: int, what: str) -> None:
    """``StorageError`` when the local folder ``uri`` has less than ``needed`` bytes free."""
    free = free_bytes(uri)
    if free is not None and free < needed:
        raise StorageError(
            f"storage {uri} has {free / 2**20:,.1f} MiB free, but {what} need about "
            f"{needed / 2**20:,.1f} MiB: free some space or choose another --storage"
        )


def claim(folder: str, file_name: str, content: bytes, taken: str) -> None:
    """Create ``folder/file_name`` holding ``content``, exclusively: if anything exists in
    ``folder`` already, or another process claims it at the same time, raise
    ``FolderTaken(taken)`` and leave the folder as it was.

    Local folders use an atomic exclusive create. Object stores offer no such create
    through pyarrow, so there each claimant writes a time-stamped ``.claim-*`` marker,
    waits ``CLAIM_SETTLE_S`` for competing markers to land (S3 and GCS list with
    read-after-write consistency), and only the earliest marker's owner goes on.
    """
    fs, path = resolve(folder)
    target = posixpath.join(path, file_name)
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(path, exist_ok=True)
        if any(not name.startswith(".write-probe-") for name in os.listdir(path)):
            raise FolderTaken(taken)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise FolderTaken(taken) from None
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        return

    def names() -> list[str]:
        return sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)))

    if any(not name.startswith((".claim-", ".write-probe-")) for name in names()):
        raise FolderTaken(taken)
    mine = f".claim-{time.time_ns():020d}-{uuid.uuid4().hex}"
    make_dirs(fs, path)  # a folder marker for Ray's own recursive creates to stop at (GCS)
    with fs.open_output_stream(posixpath.join(path, mine)) as out:
        out.write(b"")
    time.sleep(CLAIM_SETTLE_S)
    current = names()
    fresh_after = time.time_ns() - int(CLAIM_STALE_S * 1e9)
    first = min(n for n in current if n.startswith(".claim-") and int(n.split("-")[1]) >= fresh_after)
    if first != mine or file_name in current:
        fs.delete_file(posixpath.join(path, mine))
        raise FolderTaken(taken)
    with fs.open_output_stream(target) as out:
        out.write(content)
