"""Airflow-side reads of small metadata (manifests, LATEST) from the data root.

Spark applications do the heavy reading and writing; the Airflow side reads a few small JSON and
text files, and publishes a trained model (renames and small files, ``model_publish``), through
fsspec: file:// directly, hdfs:// through the namenode's WebHDFS endpoint (NBKNN_WEBHDFS_PORT).
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlparse

import fsspec

from nbknn_airflow import settings


def _fsspec_url(uri: str) -> str:
    """The fsspec URL of a data-root URI: hdfs://host[:rpc-port]/path becomes
    webhdfs://[user@]host:<NBKNN_WEBHDFS_PORT>/path (the namenode's HTTP port, not its RPC port).
    The user is HADOOP_USER_NAME when set, the same user Spark's Hadoop client acts as."""
    parsed = urlparse(uri)
    if parsed.scheme == "hdfs":
        if not parsed.hostname:
            raise ValueError(f"an hdfs:// URI needs the namenode host for WebHDFS reads (got {uri!r})")
        user = os.environ.get("HADOOP_USER_NAME")
        authority = f"{user}@{parsed.hostname}" if user else parsed.hostname
        return f"webhdfs://{authority}:{settings.webhdfs_port()}{parsed.path}"
    return uri


def filesystem(uri: str):
    """(fsspec filesystem, path) of a data-root URI, for the few writes the Airflow side makes
    (``nbknn_airflow.model_publish``)."""
    return fsspec.core.url_to_fs(_fsspec_url(uri))


def read_text(uri: str) -> str:
    with fsspec.open(_fsspec_url(uri), "r", encoding="utf-8") as handle:
        return handle.read()


def read_json(uri: str) -> dict:
    return json.loads(read_text(uri))


def exists(uri: str) -> bool:
    filesystem, path = fsspec.core.url_to_fs(_fsspec_url(uri))
    return filesystem.exists(path)


def holds_data(uri: str) -> bool:
    """Whether ``uri`` is a file, or a folder with at least one entry that readers do not skip
    (Spark and Hadoop skip names starting with '_' or '.')."""
    filesystem, path = fsspec.core.url_to_fs(_fsspec_url(uri))
    if not filesystem.exists(path):
        return False
    if not filesystem.isdir(path):
        return True
    names = (entry.rstrip("/").rsplit("/", 1)[-1] for entry in filesystem.ls(path, detail=False))
    return any(not name.startswith(("_", ".")) for name in names)
