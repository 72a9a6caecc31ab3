"""nbknn: the library shared by this project's Spark applications.

Shipped to executors as a zip through spark-submit's --py-files; never imports Airflow.
"""

__version__ = "0.1.0"
