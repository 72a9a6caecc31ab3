"""Errors that a retry cannot fix: the entry scripts exit with a distinct code for them, so the
Airflow task fails at once instead of retrying the same bad input or the same bad arguments."""

# sysexits.h: EX_DATAERR, "the input data was incorrect in some way".
NOT_RETRYABLE_EXIT_CODE = 65


class NotRetryableError(Exception):
    """Bad input or bad configuration: the same run would fail the same way again."""


class ConfigError(NotRetryableError, ValueError):
    """A parameter that cannot work (e.g. a shard budget smaller than one class)."""
