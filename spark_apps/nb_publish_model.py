"""Spark application: write the model manifest and publish the model version atomically."""

from __future__ import annotations

import argparse
import json

from nbknn.common.entry import run
from nbknn.common.session import build_session
from nbknn.contract import MODEL_TYPES
from nbknn.naive_bayes.publish import publish_model


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--staging-dir", required=True)
    parser.add_argument("--version-dir", required=True)
    parser.add_argument("--latest", required=True, help="URI of the LATEST pointer file")
    parser.add_argument("--version", required=True)
    parser.add_argument("--model-type", required=True, choices=MODEL_TYPES)
    parser.add_argument("--alpha", required=True, type=float)
    parser.add_argument("--fit-prior", required=True, action=argparse.BooleanOptionalAction)
    parser.add_argument("--lineage", default="{}", type=json.loads, help="JSON object: run id, inputs")
    parser.add_argument("--selection", action="store_true", help="use the point the selection job chose")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    spark = build_session("nb_publish_model")
    try:
        manifest = publish_model(
            spark,
            staging_dir=args.staging_dir,
            version_dir=args.version_dir,
            latest_uri=args.latest,
            version=args.version,
            model_type=args.model_type,
            alpha=args.alpha,
            fit_prior=args.fit_prior,
            lineage=args.lineage,
            selection=args.selection,
        )
        print(json.dumps({"published": args.version_dir, "num_shards": manifest["num_shards"]}, sort_keys=True))
    finally:
        spark.stop()


if __name__ == "__main__":
    run(main)
