"""Errors that a retry cannot fix: the entry scripts exit with a distinct code for them, so the
Airflow task fails at once instead of retrying the same bad input or the same bad arguments."""

from __future__ import annotations

import re

# Spark's error for a file it could not read, and the causes that mean the file's bytes are bad
# (a truncated or corrupt compressed file, a file that is not Parquet), as opposed to a storage
# failure that a retry may well get past (a datanode down, a timeout).
_FAILED_READ = re.compile(r"FAILED_READ_FILE|CANNOT_READ_FILE_FOOTER")
_CORRUPT_CAUSE = re.compile(
    r"java\.io\.EOFException|java\.util\.zip\.ZipException|not in GZIP format|Unexpected end of (ZLIB )?input stream"
    r"|incorrect header check|invalid (stored )?block|is not a Parquet file|CANNOT_READ_FILE_FOOTER"
    r"|Corrupt(ed)? (file|input|block)|Stream is corrupted",
    re.IGNORECASE,
)
_FILE_NAME = re.compile(r"(?:reading file|footer for file:?)\s+(\S+?)\.?(?:\s|$)")


class NotRetryableError(Exception):
    """Bad input or bad configuration: the same run would fail the same way again."""


class ConfigError(NotRetryableError, ValueError):
    """A parameter that cannot work (e.g. a shard budget smaller than one class)."""


def _exception_chain_text(exc: BaseException) -> str:
    """The exception's text and, for an error raised in the JVM, every cause's."""
    parts = [str(exc)]
    java = getattr(exc, "java_exception", None)
    try:
        while java is not None:
            parts.append(str(java.toString()))
            java = java.getCause()
    except Exception:  # the gateway may be gone; the Python text is enough then
        pass
    return "\n".join(parts)


def unreadable_input_file(exc: BaseException) -> str | None:
    """A one-line explanation when ``exc`` is Spark failing to read an input file whose bytes are
    bad (not retryable), else None."""
    text = _exception_chain_text(exc)
    if not _FAILED_READ.search(text) or not _CORRUPT_CAUSE.search(text):
        return None
    name = _FILE_NAME.search(text)
    cause = _CORRUPT_CAUSE.search(text).group(0)
    where = name.group(1) if name else "an input file"
    return f"cannot read {where}: the file is corrupt or truncated ({cause}); repair or remove it and rerun"
