"""Airflow-side helpers of the nbknn pipeline: settings, path layout, parameter validation, the
Spark operator factory and asset definitions. Never imports pyspark."""
