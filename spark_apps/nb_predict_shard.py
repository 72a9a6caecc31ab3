"""Spark application: one prediction pass, scoring every document against the classes of one model shard."""

from __future__ import annotations

import argparse
import json

from nbknn.common import cli
from nbknn.common.entry import run
from nbknn.common.session import build_session
from nbknn.naive_bayes.shard_pass import run_predict_shard


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", required=True, help="published model directory (with manifest.json)")
    parser.add_argument("--vectors", required=True, help="URI of the vectors written by nb_vectorize")
    parser.add_argument("--shard", required=True, type=cli.non_negative_int)
    parser.add_argument("--scores", required=True, help="URI of this shard's scores output directory")
    parser.add_argument("--top-n", type=cli.non_negative_int, default=0, help="keep the shard's best N classes")
    parser.add_argument("--top-terms", type=cli.non_negative_int, default=0,
                        help="non-zero: also write the term weights the combiner's top terms need")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    spark = build_session(f"nb_predict_shard_{args.shard}")
    try:
        summary = run_predict_shard(spark, args.model_dir, args.vectors, args.shard, args.scores, args.top_n,
                                    args.top_terms)
        print(json.dumps(summary, indent=2, sort_keys=True))
    finally:
        spark.stop()


if __name__ == "__main__":
    run(main)
