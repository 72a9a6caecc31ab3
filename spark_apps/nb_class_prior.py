"""Spark application: validate labelled documents and count documents per class (dict1 priors)."""

from __future__ import annotations

import argparse
import json

from nbknn.common import cli
from nbknn.common.entry import run
from nbknn.common.session import build_session
from nbknn.naive_bayes.class_prior import run_class_prior


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    cli.add_input_arguments(parser)
    cli.add_reject_arguments(parser)
    parser.add_argument("--model-dir", required=True, help="staging directory of the model being built")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    spark = build_session("nb_class_prior")
    try:
        summary = run_class_prior(
            spark, cli.input_spec(args), args.model_dir, args.rejects, args.max_reject_fraction
        )
        print(json.dumps(summary, indent=2, sort_keys=True))
    finally:
        spark.stop()


if __name__ == "__main__":
    run(main)
