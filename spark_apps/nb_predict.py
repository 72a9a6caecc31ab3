"""Spark application: predict documents with a whole model in one pass (models that fit one broadcast)."""

from __future__ import annotations

import argparse
import json

from nbknn.common import cli
from nbknn.common.entry import run
from nbknn.common.session import build_session
from nbknn.naive_bayes.single_pass import run_predict_single_pass


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    cli.add_input_arguments(parser)
    cli.add_reject_arguments(parser)
    parser.add_argument("--model-dir", required=True, help="published model directory (with manifest.json)")
    parser.add_argument("--predictions", required=True, help="URI of the predictions output directory")
    parser.add_argument("--report", required=True, help="URI of the report output directory")
    parser.add_argument("--top-n", type=cli.non_negative_int, default=0, help="keep the best N classes per document")
    parser.add_argument("--top-terms", type=cli.non_negative_int, default=0,
                        help="list each document's N terms that weighed most for its class (0: off)")
    parser.add_argument("--path-reason", default="", help="why the plan chose one pass (recorded in the summary)")
    cli.add_history_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    spark = build_session("nb_predict")
    try:
        summary = run_predict_single_pass(
            spark, cli.input_spec(args), args.model_dir, args.predictions, args.report, args.rejects,
            args.max_reject_fraction, args.top_n, args.path_reason, history=cli.history_target(args),
            top_terms=args.top_terms,
        )
        print(json.dumps(summary, indent=2, sort_keys=True))
    finally:
        spark.stop()


if __name__ == "__main__":
    run(main)
