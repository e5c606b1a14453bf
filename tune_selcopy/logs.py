"""Parquet trial logs: one file per validation per trial, written by the trial itself.

Layout: ``<storage>/<experiment>/logs/<trial_id>/validation-<k:03d>.parquet``, one row
each. The file name is the row's identity, so a trial that replays a validation after a
retry or a resume overwrites the same file: a row can never be duplicated or lost.
Writes go through pyarrow's filesystem layer, so the same code writes to a local folder,
``file://``, ``s3://`` or ``gs://``. Read everything with
``pandas.read_parquet("<storage>/<experiment>/logs")``.
"""

from __future__ import annotations

import posixpath
import socket
import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

LOGS_DIR = "logs"
# The identity and run columns every row has, before the config values and metrics.
ID_COLUMNS = ("experiment", "space", "trial_id", "setting", "seed", "varied_keys")
METRIC_COLUMNS = tuple(
    f"{split}_{name}"
    for split in ("train", "validation")
    for name in ("loss", "error%", "mask_error%", "sample_error%")
)


def resolve(uri_or_path: str) -> tuple[pafs.FileSystem, str]:
    """A filesystem and a path in it for a local path or a ``scheme://`` URI."""
    if "://" not in uri_or_path:
        return pafs.LocalFileSystem(), posixpath.abspath(posixpath.expanduser(uri_or_path))
    return pafs.FileSystem.from_uri(uri_or_path)


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI (which ``os.path`` would mangle)."""
    return posixpath.join(base, *parts)


def logs_uri(storage: str, experiment: str) -> str:
    return join(storage, experiment, LOGS_DIR)


def row_file(logs: str, trial_id: str, validation_index: int) -> str:
    return join(logs, trial_id, f"validation-{validation_index:03d}.parquet")


def write_row(logs: str, trial_id: str, row: Mapping[str, Any]) -> str:
    """Write one validation row of one trial; atomic, idempotent per validation index.

    Adds ``hostname`` and ``timestamp``. Returns the file written.
    """
    record = {**row, "trial_id": trial_id, "hostname": socket.gethostname(), "timestamp": time.time()}
    target = row_file(logs, trial_id, int(row["validation_index"]))
    fs, path = resolve(target)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    # A dot-file is skipped by Parquet dataset readers, so a half-written file is never read.
    tmp = posixpath.join(posixpath.dirname(path), "." + posixpath.basename(path) + ".tmp")
    pq.write_table(pa.Table.from_pylist([record]), tmp, filesystem=fs)
    fs.move(tmp, path)
    return target


def read_row(logs: str, trial_id: str, validation_index: int) -> dict[str, Any] | None:
    """The row ``write_row`` wrote for this trial and validation, or None if there is none."""
    fs, path = resolve(row_file(logs, trial_id, validation_index))
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    return pq.read_table(path, filesystem=fs).to_pylist()[0]
