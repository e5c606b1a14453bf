"""Where files live: a local path or a URI that pyarrow's filesystems open (``file://``,
``s3://``, ``gs://``), turned into a filesystem and a path in it, and paths joined onto it.

A URI may carry pyarrow's options as its query (``FileSystem.from_uri``), e.g. an
S3-compatible store: ``s3://bucket/sweeps?endpoint_override=host:9000&scheme=http&region=us-east-1``.
Joined paths go before the query, so every file of a sweep is opened with the same options.
"""

from __future__ import annotations

import posixpath
import urllib.parse

import pyarrow.fs as pafs

from tune_selcopy.errors import UserError, one_line


def _split(uri_or_path: str) -> tuple[str, str]:
    """(the part before the query, ``?query`` or ""). Local paths have no query: a ``?``
    there is part of a file name."""
    if "://" not in uri_or_path:
        return uri_or_path, ""
    base, mark, query = uri_or_path.partition("?")
    return base, mark + query


def resolve(uri_or_path: str) -> tuple[pafs.FileSystem, str]:
    """A filesystem and a path in it for a local path or a ``scheme://`` URI.

    ``UserError`` (one line) for a URI pyarrow refuses (an unknown option, a bad value) and
    for one with a secret in it: URIs are saved with the sweep and printed in messages, so
    credentials belong in the environment (``AWS_SECRET_ACCESS_KEY``, ...).
    """
    if "://" not in uri_or_path:
        return pafs.LocalFileSystem(), posixpath.abspath(posixpath.expanduser(uri_or_path))
    try:
        password = urllib.parse.urlsplit(uri_or_path).password
    except ValueError:  # e.g. a malformed IPv6 host; pyarrow says what is wrong below
        password = None
    if password:
        raise UserError(
            f"{_without_secret(uri_or_path)}: a URI must not carry a secret (it is saved with the sweep and printed); "
            "give credentials through the environment, e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    try:
        return pafs.FileSystem.from_uri(uri_or_path)
    except ValueError as exc:  # pyarrow.ArrowInvalid: unknown scheme or option, bad value
        raise UserError(f"cannot open {uri_or_path}: {one_line(exc, 300)}") from None


def _without_secret(uri: str) -> str:
    """``uri`` with its user info (key and secret) replaced by ``***``; the host starts
    after the netloc's last ``@``, as ``urlsplit`` reads it (a secret may hold an ``@``)."""
    parts = urllib.parse.urlsplit(uri)
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI (which ``os.path`` would mangle), before
    the URI's query: ``join("s3://b/x?region=r", "y")`` is ``s3://b/x/y?region=r``."""
    path, query = _split(base)
    return posixpath.join(path, *parts) + query


def split_name(uri_or_path: str) -> tuple[str, str]:
    """(its folder, its last name), the URI's query kept with the folder, so that
    ``join(*split_name(x)) == x``: ``s3://b/x/y?region=r`` -> ``("s3://b/x?region=r", "y")``."""
    path, query = _split(uri_or_path)
    folder, name = posixpath.split(path)
    return folder + query, name


def make_dirs(fs: pafs.FileSystem, path: str) -> None:
    """Create folder ``path`` in ``fs`` and its parents, with object permissions only.

    On GCS, pyarrow's recursive create reads the bucket's metadata (``storage.buckets.get``,
    which roles such as ``roles/storage.objectAdmin`` lack) whenever no parent folder
    marker exists yet, as on a fresh bucket. Created one level at a time from the top, each
    level needs only its parent's marker (``storage.objects.get``) and its own
    (``storage.objects.create``); later recursive creates (Ray's) stop at these markers.
    On S3 a recursive create needs ``s3:ListBucket`` (its bucket check) and
    ``s3:PutObject`` (the markers); locally it is ``mkdir -p``.
    """
    if fs.type_name != "gcs":
        fs.create_dir(path, recursive=True)
        return
    bucket, *names = path.strip("/").split("/")
    for depth in range(1, len(names) + 1):
        fs.create_dir(posixpath.join(bucket, *names[:depth]), recursive=False)
