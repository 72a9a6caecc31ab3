"""The common frame of every entry script: run, and turn not-retryable errors into an exit code."""

from __future__ import annotations

import sys
from typing import Callable

from nbknn.common.errors import NotRetryableError, unreadable_input_file
from nbknn.contract import NOT_RETRYABLE_EXIT_CODE


def run(main: Callable[[list[str]], None], argv: list[str] | None = None) -> None:
    try:
        main(sys.argv[1:] if argv is None else argv)
    except NotRetryableError as exc:
        print(f"nbknn: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(NOT_RETRYABLE_EXIT_CODE)
    except Exception as exc:
        # Raised by Spark when it reads the data: a corrupt file fails every retry the same way.
        message = unreadable_input_file(exc)
        if message is None:
            raise
        print(f"nbknn: InputError: {message}", file=sys.stderr, flush=True)
        sys.exit(NOT_RETRYABLE_EXIT_CODE)
