"""Command-line arguments shared by the entry scripts (one definition per argument)."""

from __future__ import annotations

import argparse

from nbknn.common.errors import ConfigError
from nbknn.contract import (
    DEFAULT_MAX_RECORD_BYTES,
    DEFAULT_MAX_REJECT_FRACTION,
    DEFAULT_NORMALIZATION,
    DEFAULT_TOKEN_PATTERN,
    DOCUMENT_FORMATS,
    NORMALIZATIONS,
)
from nbknn.inputs.documents import InputSpec
from nbknn.inputs.tokenizer import TokenizerConfig
from nbknn.naive_bayes.quality_history import HistoryTarget


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1] (got {text})")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {text})")
    return value


def float_list(text: str) -> list[float]:
    """Comma-separated numbers, e.g. ``0.01,0.1,1``."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers (got {text!r})") from None


def word_list(text: str) -> list[str]:
    """Comma-separated words, e.g. ``multinomial,complement``."""
    return [part.strip() for part in text.split(",")]


def bool_list(text: str) -> list[bool]:
    """Comma-separated ``true``/``false``."""
    values = {"true": True, "false": False}
    parts = [part.strip().lower() for part in text.split(",")]
    if any(part not in values for part in parts):
        raise argparse.ArgumentTypeError(f"must be comma-separated true/false (got {text!r})")
    return [values[part] for part in parts]


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (got {text})")
    return value


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("input")
    group.add_argument("--input", required=True, help="URI of the documents (a file or a directory)")
    group.add_argument("--format", default="jsonl", choices=DOCUMENT_FORMATS)
    group.add_argument("--id-column", default="id")
    group.add_argument("--label-column", default="label")
    group.add_argument("--text-column", default="text")
    group.add_argument(
        "--tsv-columns", default="id,label,text", help="comma-separated field order of headerless TSV"
    )
    group.add_argument("--max-record-bytes", type=positive_int, default=DEFAULT_MAX_RECORD_BYTES)


def input_spec(args: argparse.Namespace) -> InputSpec:
    return InputSpec(
        uri=args.input,
        format=args.format,
        id_column=args.id_column,
        label_column=args.label_column,
        text_column=args.text_column,
        tsv_columns=tuple(c.strip() for c in args.tsv_columns.split(",")),
        max_record_bytes=args.max_record_bytes,
    )


def add_tokenizer_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tokeniser")
    group.add_argument("--token-pattern", default=DEFAULT_TOKEN_PATTERN)
    group.add_argument("--lowercase", default=True, action=argparse.BooleanOptionalAction)
    group.add_argument("--normalization", default=DEFAULT_NORMALIZATION, choices=NORMALIZATIONS)


def tokenizer_config(args: argparse.Namespace) -> TokenizerConfig:
    return TokenizerConfig(pattern=args.token_pattern, lowercase=args.lowercase, normalization=args.normalization)


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("quality history (evaluated runs add a row)")
    group.add_argument("--quality-history", help="URI of the quality history folder (none: no row, no picture)")
    group.add_argument("--run-key", help="the run's key: names its row (required with --quality-history)")
    group.add_argument("--run-date", help="the run's date (ISO 8601), recorded in its row")


def history_target(args: argparse.Namespace) -> HistoryTarget | None:
    if args.quality_history is None:
        return None
    if not args.run_key:
        raise ConfigError("--quality-history needs --run-key (the run's row is named by it)")
    return HistoryTarget(uri=args.quality_history, run_key=args.run_key, run_date=args.run_date)


def add_reject_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rejects", required=True, help="URI where quarantined records are written")
    parser.add_argument("--max-reject-fraction", type=fraction, default=DEFAULT_MAX_REJECT_FRACTION)
