"""The embedded local environment of ``make demo`` and ``make airflow``, and the real corpora."""
