"""Spark application: TF-IDF + truncated SVD document vectors (the input of knn_neighbors)."""

from __future__ import annotations

import argparse
import json

from nbknn.common import cli
from nbknn.common.entry import run
from nbknn.common.session import build_session
from nbknn.doc_vectors.job import run_doc_vectors


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    cli.add_input_arguments(parser)
    cli.add_tokenizer_arguments(parser)
    cli.add_reject_arguments(parser)
    parser.add_argument("--output", required=True, help="URI of the (id, vector) Parquet output")
    parser.add_argument("--dims", type=cli.positive_int, default=128)
    parser.add_argument("--min-doc-freq", type=cli.positive_int, default=2)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    spark = build_session("make_doc_vectors")
    try:
        summary = run_doc_vectors(
            spark,
            cli.input_spec(args),
            args.output,
            args.rejects,
            args.max_reject_fraction,
            cli.tokenizer_config(args),
            dims=args.dims,
            min_doc_freq=args.min_doc_freq,
        )
        print(json.dumps(summary, indent=2, sort_keys=True))
    finally:
        spark.stop()


if __name__ == "__main__":
    run(main)
