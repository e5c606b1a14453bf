"""Where files live: a local path or a URI that pyarrow's filesystems open (``file://``,
``s3://``, ``gs://``), turned into a filesystem and a path in it, and paths joined onto it."""

from __future__ import annotations

import posixpath

import pyarrow.fs as pafs


def resolve(uri_or_path: str) -> tuple[pafs.FileSystem, str]:
    """A filesystem and a path in it for a local path or a ``scheme://`` URI."""
    if "://" not in uri_or_path:
        return pafs.LocalFileSystem(), posixpath.abspath(posixpath.expanduser(uri_or_path))
    return pafs.FileSystem.from_uri(uri_or_path)


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI (which ``os.path`` would mangle)."""
    return posixpath.join(base, *parts)
