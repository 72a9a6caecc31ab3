"""Spark application: combine every shard's scores into predictions, and write the report."""

from __future__ import annotations

import argparse
import json

from nbknn.common import cli
from nbknn.common.entry import run
from nbknn.common.session import build_session
from nbknn.naive_bayes.combine import run_combine


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", required=True, help="published model directory (with manifest.json)")
    parser.add_argument("--vectors", required=True, help="URI of the vectors written by nb_vectorize")
    parser.add_argument("--scores", required=True, help="URI of the directory holding shard=S/ scores")
    parser.add_argument("--predictions", required=True, help="URI of the predictions output directory")
    parser.add_argument("--report", required=True, help="URI of the report output directory")
    parser.add_argument("--top-n", type=cli.non_negative_int, default=0, help="keep the best N classes per document")
    parser.add_argument("--top-terms", type=cli.non_negative_int, default=0,
                        help="list each document's N terms that weighed most for its class (0: off)")
    cli.add_history_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    spark = build_session("nb_combine")
    try:
        summary = run_combine(
            spark, args.model_dir, args.vectors, args.scores, args.predictions, args.report, args.top_n,
            cli.history_target(args), args.top_terms,
        )
        print(json.dumps(summary, indent=2, sort_keys=True))
    finally:
        spark.stop()


if __name__ == "__main__":
    run(main)
