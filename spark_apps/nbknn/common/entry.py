"""The common frame of every entry script: run, and turn not-retryable errors into an exit code."""

from __future__ import annotations

import os
import sys
from typing import Callable

from nbknn.common.errors import NotRetryableError, unreadable_input_file
from nbknn.contract import ERROR_FILE_ENV, NOT_RETRYABLE_EXIT_CODE


def run(main: Callable[[list[str]], None], argv: list[str] | None = None) -> None:
    try:
        main(sys.argv[1:] if argv is None else argv)
    except NotRetryableError as exc:
        refuse(f"nbknn: {type(exc).__name__}: {exc}")
    except Exception as exc:
        # Raised by Spark when it reads the data: a corrupt file fails every retry the same way.
        message = unreadable_input_file(exc)
        if message is None:
            raise
        refuse(f"nbknn: InputError: {message}")


def refuse(line: str) -> None:
    """Say why the input or arguments are refused (stderr, and the error file when the operator
    asked for one) and exit with the not-retryable code."""
    print(line, file=sys.stderr, flush=True)
    error_file = os.environ.get(ERROR_FILE_ENV)
    if error_file:
        try:
            with open(error_file, "w", encoding="utf-8") as out:
                out.write(line)
        except OSError:
            pass  # the stderr line above still says it
    sys.exit(NOT_RETRYABLE_EXIT_CODE)
