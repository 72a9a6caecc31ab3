"""Hadoop FileSystem operations on URIs (hdfs://, file://, s3a://, ...) through the Spark JVM.

Spark applications read and write data through Spark; the few file operations that Spark has no
API for (small JSON documents, existence checks, atomic renames) go through Hadoop's FileSystem
API here, so that no code assumes a local path.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from nbknn import contract

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _java_class(spark: SparkSession, name: str):
    """A JVM class by its binary name, in one Py4J call. Attribute chains such as
    ``jvm.org.apache.hadoop.fs.Path`` cost a call per package, and each one first fails a class
    lookup over the whole class path: about ten times as long."""
    return getattr(spark.sparkContext._jvm, name)


def _path(spark: SparkSession, uri: str):
    return _java_class(spark, "org.apache.hadoop.fs.Path")(uri)


def _filesystem(spark: SparkSession, uri: str):
    """The Hadoop FileSystem of ``uri`` and its Path."""
    path = _path(spark, uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def exists(spark: SparkSession, uri: str) -> bool:
    fs, path = _filesystem(spark, uri)
    return bool(fs.exists(path))


def delete(spark: SparkSession, uri: str) -> None:
    """Delete a file or a directory tree; a missing path is not an error."""
    fs, path = _filesystem(spark, uri)
    fs.delete(path, True)


def mkdirs(spark: SparkSession, uri: str) -> None:
    fs, path = _filesystem(spark, uri)
    fs.mkdirs(path)


def list_names(spark: SparkSession, uri: str) -> list[str]:
    """Names of the entries directly under a directory URI (sorted)."""
    fs, path = _filesystem(spark, uri)
    return sorted(status.getPath().getName() for status in fs.listStatus(path))


def data_files(spark: SparkSession, uri: str) -> list[tuple[str, int]]:
    """(URI, bytes) of every file under a directory URI, recursively and sorted, without the
    names Hadoop's and Spark's readers skip: any path part below ``uri`` that starts with '_' or
    '.' (markers, checksums, a writer's temporary directories)."""
    root = uri.rstrip("/")

    def visible(relative: str) -> bool:
        return not any(part.startswith(("_", ".")) for part in relative.split("/"))

    if urlparse(root).scheme == "file":
        base = urlparse(root).path
        found = []
        for directory, _, names in os.walk(base):
            for name in names:
                relative = os.path.relpath(os.path.join(directory, name), base)
                if visible(relative):
                    found.append((f"{root}/{relative}", os.path.getsize(os.path.join(directory, name))))
        return sorted(found)
    fs, path = _filesystem(spark, root)
    qualified = str(fs.makeQualified(path).toString()).rstrip("/")
    listing, found = fs.listFiles(path, True), []
    while listing.hasNext():
        status = listing.next()
        relative = str(status.getPath().toString())[len(qualified) + 1:]
        if visible(relative):
            found.append((f"{root}/{relative}", int(status.getLen())))
    return sorted(found)


def read_bytes(spark: SparkSession, uri: str) -> bytes:
    """The whole content of a small file."""
    if urlparse(uri).scheme == "file":
        with open(urlparse(uri).path, "rb") as source:
            return source.read()
    fs, path = _filesystem(spark, uri)
    stream = fs.open(path)
    try:
        return bytes(_java_class(spark, "org.apache.commons.io.IOUtils").toByteArray(stream))
    finally:
        stream.close()


def read_text(spark: SparkSession, uri: str) -> str:
    fs, path = _filesystem(spark, uri)
    stream = fs.open(path)
    try:
        reader = _java_class(spark, "java.io.BufferedReader")(
            _java_class(spark, "java.io.InputStreamReader")(stream, "UTF-8")
        )
        lines = []
        line = reader.readLine()
        while line is not None:
            lines.append(line)
            line = reader.readLine()
        return "\n".join(lines)
    finally:
        stream.close()


def read_json(spark: SparkSession, uri: str):
    return json.loads(read_text(spark, uri))


def rename(spark: SparkSession, source_uri: str, target_uri: str) -> None:
    """Rename a file or directory; fails if the target exists (HDFS rename is atomic)."""
    fs, source = _filesystem(spark, source_uri)
    if not fs.rename(source, _path(spark, target_uri)):
        raise OSError(f"rename failed: {source_uri} -> {target_uri}")


def write_text_atomic(spark: SparkSession, uri: str, text: str) -> None:
    """Write a small text file so that readers see either the old file or the whole new one.

    The text goes to a hidden temporary file beside the target, which is then renamed over it.
    Then the temporary files that earlier writes of the same file left when they were killed
    before their rename are removed (:func:`remove_abandoned_temps`).
    """
    parent, name = uri.rstrip("/").rsplit("/", 1)
    for attempt in range(_SMALL_FILE_ATTEMPTS):
        temp_uri = f"{parent}/{contract.small_file_temp_name(name, uuid.uuid4().hex)}"
        try:
            _write_new_file(spark, temp_uri, text)
            _replace(spark, temp_uri, uri)
            break
        except Exception:
            # A concurrent writer of the same file (two runs replacing LATEST) may remove this
            # temporary file as abandoned before it is renamed: then write it again.
            if attempt + 1 == _SMALL_FILE_ATTEMPTS or exists(spark, temp_uri):
                raise
    remove_abandoned_temps(spark, parent, name)


# Writes of one small file whose temporary file vanished (removed by a concurrent writer) before
# the write gives up.
_SMALL_FILE_ATTEMPTS = 3


def _write_new_file(spark: SparkSession, uri: str, text: str) -> None:
    if urlparse(uri).scheme == "file":
        # Written by Python, not Hadoop's local FileSystem, which would leave .crc side files
        # behind for the renamed temporary file.
        os.makedirs(os.path.dirname(urlparse(uri).path), exist_ok=True)
        with open(urlparse(uri).path, "w", encoding="utf-8") as out:
            out.write(text)
        return
    fs, path = _filesystem(spark, uri)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def remove_abandoned_temps(spark: SparkSession, parent_uri: str, name: str) -> list[str]:
    """Delete the temporary files of writes of the small file ``name`` that were killed before
    their rename; returns the names removed.

    Called right after a write of ``name`` has renamed its own temporary file: a concurrent
    write's file removed here makes that write start again (:func:`write_text_atomic`).
    """
    removed = [entry for entry in list_names(spark, parent_uri) if contract.is_small_file_temp(entry, name)]
    for entry in removed:
        delete(spark, f"{parent_uri}/{entry}")
    return removed


def write_json_atomic(spark: SparkSession, uri: str, document) -> None:
    write_text_atomic(spark, uri, json.dumps(document, indent=2, sort_keys=True) + "\n")


def _replace(spark: SparkSession, source_uri: str, target_uri: str) -> None:
    """Rename ``source`` over an existing ``target`` in one atomic step where the store allows it."""
    parsed = urlparse(target_uri)
    if parsed.scheme == "file":
        # The local file system's rename(2) replaces atomically; Hadoop's local FileSystem would
        # delete the target first and leave a moment with no file at all.
        os.replace(urlparse(source_uri).path, parsed.path)
        return
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    file_context = _java_class(spark, "org.apache.hadoop.fs.FileContext")
    target = _path(spark, target_uri)
    context = file_context.getFileContext(target.toUri(), conf)
    rename_option = _java_class(spark, "org.apache.hadoop.fs.Options$Rename")
    options = spark.sparkContext._gateway.new_array(rename_option, 1)
    options[0] = rename_option.OVERWRITE
    # HDFS implements rename-with-OVERWRITE as one atomic namenode operation.
    context.rename(_path(spark, source_uri), target, options)


def write_bytes(spark: SparkSession, uri: str, data: bytes) -> None:
    """Write a small binary file (e.g. a PNG) in one go; not atomic on its own, so write it inside
    a temporary directory that is published with :func:`publish_dir`."""
    if urlparse(uri).scheme == "file":
        path = urlparse(uri).path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(data)
        return
    fs, path = _filesystem(spark, uri)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def temporary_sibling(uri: str, tag: str = "tmp") -> str:
    """A fresh name beside ``uri`` for building an output before publishing it.

    It starts with '_', which Hadoop input formats and Spark's file listing skip, so a reader of
    the parent directory never picks up a half-written sibling.
    """
    parent, name = uri.rstrip("/").rsplit("/", 1)
    return f"{parent}/_{tag}-{name}-{uuid.uuid4().hex[:12]}"


def publish_dir(spark: SparkSession, staging_uri: str, target_uri: str) -> None:
    """Move a completely written directory into place, replacing an earlier version of it.

    With no earlier version this is one atomic rename. Otherwise the old directory is renamed
    aside, the new one renamed into place and the old one deleted: a reader sees the old
    directory or the new one whole (or, for the moment between the two renames, none), never a
    mixture. Used when a retried task republishes its own run's output.
    """
    target = target_uri.rstrip("/")
    if exists(spark, target):
        displaced = temporary_sibling(target, "replaced")
        rename(spark, target, displaced)
        rename(spark, staging_uri, target)
        delete(spark, displaced)
    else:
        mkdirs(spark, target.rsplit("/", 1)[0])
        rename(spark, staging_uri, target)
    remove_abandoned_siblings(spark, target)


def remove_abandoned_siblings(spark: SparkSession, uri: str) -> list[str]:
    """Delete what earlier attempts at publishing ``uri`` left beside it when they were killed
    (their temporary and displaced siblings); returns the names removed.

    Called once ``uri`` holds a complete new output: only one attempt of a task runs at a time, so
    any other sibling of this output belongs to an attempt that is gone.
    """
    parent, name = uri.rstrip("/").rsplit("/", 1)
    pattern = re.compile(rf"^_(tmp|replaced)-{re.escape(name)}-[0-9a-f]{{12}}$")
    removed = [entry for entry in list_names(spark, parent) if pattern.match(entry)]
    for entry in removed:
        delete(spark, f"{parent}/{entry}")
    return removed
