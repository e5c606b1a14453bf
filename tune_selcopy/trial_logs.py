"""Parquet trial logs: one file per validation per trial, written by the trial itself.

Layout: ``<storage>/<experiment>/logs/<trial_id>/validation-<k:03d>.parquet``, one row
each. The file name is the row's identity, so a trial that replays a validation after a
retry or a resume overwrites the same file: a row can never be duplicated or lost.
Writes go through pyarrow's filesystem layer, so the same code writes to a local folder,
``file://``, ``s3://`` or ``gs://``. Read everything with
``pandas.read_parquet("<storage>/<experiment>/logs")``, or with ``load_logs`` below, which
checks every file against the columns written here and names the first bad one.
"""

from __future__ import annotations

import contextlib
import posixpath
import socket
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tune_selcopy.errors import UserError, one_line
from tune_selcopy.uris import join, resolve

LOGS_DIR = "logs"
# The identity and run columns every row has, before the config values and metrics.
ID_COLUMNS = ("experiment", "space", "trial_id", "setting", "seed", "varied_keys")
METRIC_COLUMNS = tuple(
    f"{split}_{name}"
    for split in ("train", "validation")
    for name in ("loss", "error%", "mask_error%", "sample_error%")
)
# What every row must have to be read back (the config values vary with the space).
PROGRESS_COLUMNS = ("validation_index", "num_validations", "num_inputs")
RUN_COLUMNS = ("model_params", "train_time_s", "throughput")
REQUIRED_COLUMNS = ID_COLUMNS + PROGRESS_COLUMNS + METRIC_COLUMNS + RUN_COLUMNS
NUMERIC_COLUMNS = ("seed",) + PROGRESS_COLUMNS + METRIC_COLUMNS + RUN_COLUMNS


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
    if isinstance(fs, pafs.LocalFileSystem):  # an object store needs no folder before an object
        fs.create_dir(posixpath.dirname(path), recursive=True)
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist([record]), buffer)
    write_atomically(fs, path, buffer.getvalue().to_pybytes())
    return target


def write_atomically(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Replace ``path`` with ``data``, or leave it as it was if the write fails (a full
    disk). The temporary file is a dot-file, which Parquet dataset readers skip."""
    tmp = posixpath.join(posixpath.dirname(path), "." + posixpath.basename(path) + ".tmp")
    try:
        with fs.open_output_stream(tmp) as out:
            out.write(data)
        fs.move(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            fs.delete_file(tmp)
        raise


def read_row(logs: str, trial_id: str, validation_index: int) -> dict[str, Any] | None:
    """The row ``write_row`` wrote for this trial and validation, or None if there is none."""
    fs, path = resolve(row_file(logs, trial_id, validation_index))
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    return pq.read_table(path, filesystem=fs).to_pylist()[0]


# --- Reading a sweep's logs back (the analysis) -----------------------------------


def _open(path: str) -> tuple[pafs.FileSystem, str, str]:
    """(filesystem, root path inside it, prefix for display) for a local path or a URI."""
    try:
        fs, root = resolve(path)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure is the user's URI
        raise UserError(f"cannot open {path}: {one_line(e)}") from None
    scheme = path.split("://", 1)[0] if "://" in path else "file"
    return fs, root, "" if scheme == "file" else f"{scheme}://"


def find_log_files(path: str) -> tuple[pafs.FileSystem, list[str], str]:
    """All ``*.parquet`` files under ``path`` (recursively), sorted.

    Returns ``(filesystem, [paths], display_prefix)``. Names starting with ``.`` or ``_``
    (temporary or marker files) are skipped. Raises UserError when the path does not
    exist or holds no Parquet file.
    """
    fs, root, prefix = _open(path)
    try:
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise UserError(f"{path}: no such file or folder")
        if info.type == pafs.FileType.File:
            infos = [info]
        else:
            infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot list {path}: {one_line(e)}") from None
    files = sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File
        and i.base_name.endswith(".parquet")
        and not i.base_name.startswith((".", "_"))
    )
    if not files:
        raise UserError(
            f"{path}: no Parquet trial logs found (expected <experiment>/{LOGS_DIR}/<trial_id>/validation-NNN.parquet)"
        )
    return fs, files, prefix


def read_log_file(fs: pafs.FileSystem, file: str, shown: str) -> pa.Table:
    """One log file as a table, checked against the columns ``write_row`` writes.

    ``shown`` names the file in errors. Raises UserError for an unreadable file, a
    foreign one (missing or non-numeric columns) or an empty one.
    """
    try:
        with fs.open_input_file(file) as f:
            table = pq.ParquetFile(f).read()
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{shown}: not a readable Parquet file ({one_line(e)})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise UserError(f"{shown}: not a tune_selcopy trial log (missing columns: {', '.join(missing)})")
    numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_null)
    bad = [c for c in NUMERIC_COLUMNS if not any(is_(table.schema.field(c).type) for is_ in numeric)]
    if bad:
        raise UserError(f"{shown}: not a tune_selcopy trial log (non-numeric columns: {', '.join(bad)})")
    if table.num_rows == 0:
        raise UserError(f"{shown}: trial log has no rows")
    return table


def load_logs(path: str, space: str | None = None) -> pd.DataFrame:
    """All validation rows under ``path`` as one DataFrame (one row per trial validation).

    Duplicate (experiment, trial_id, validation_index) rows keep the latest ``timestamp``.
    ``space`` keeps only that space. Raises UserError naming the first bad file.
    """
    fs, files, prefix = find_log_files(path)
    with ThreadPoolExecutor(max_workers=8) as pool:
        tables = list(pool.map(lambda f: read_log_file(fs, f, prefix + f), files))
    try:
        df = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # column types differ between files
        df = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    if "timestamp" in df.columns:
        df = df.sort_values("timestamp", kind="stable")
    df = df.drop_duplicates(["experiment", "trial_id", "validation_index"], keep="last")
    if space is not None:
        found = sorted(df["space"].astype(str).unique())
        df = df[df["space"] == space]
        if df.empty:
            raise UserError(f"{path}: no trials of space {space!r} (found: {', '.join(found)})")
    return df.reset_index(drop=True)
