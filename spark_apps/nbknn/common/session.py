"""The one place where the project's Spark applications build their SparkSession."""

from __future__ import annotations

from pyspark.sql import SparkSession


def build_session(app_name: str) -> SparkSession:
    """Session for an entry script; master and resources come from spark-submit, not from code."""
    spark = SparkSession.builder.appName(app_name).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
