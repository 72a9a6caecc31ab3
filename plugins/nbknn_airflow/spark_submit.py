"""SparkSubmitOperator factory: every Spark task of the project is built here.

The library package shipped to executors (``spark_apps/nbknn``) is zipped when a task runs and
passed as ``--py-files``, so executors need nothing of this repository on their PYTHONPATH and
nobody has to remember a build step; the tokeniser's scanner goes with ``--jars`` the same way
(:mod:`nbknn_airflow.token_scanner`). The zip is named by the hash of its content and built at most
once per content.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from nbknn.contract import ERROR_FILE_ENV, NOT_RETRYABLE_EXIT_CODES
from nbknn_airflow import settings
from nbknn_airflow.archives import publish_archive
from nbknn_airflow.token_scanner import jars_value, token_scanner_jar

# How the provider's SparkSubmitHook.submit reports a failed spark-submit: "Cannot execute: <command>.
# Error code is: <exit code>.", then, when spark-submit printed anything, a line "Last spark-submit
# output:" and its last lines. Anchoring on what follows the code keeps a command argument or an
# output line that happens to contain "Error code is: N." from being taken for it.
_SUBMIT_FAILURE = re.compile(
    r"\ACannot execute: .*?\. Error code is: (-?\d+)\.(?:\Z|\nLast spark-submit output:\n)", re.DOTALL
)
# Names of Spark/Hadoop properties that hold credentials. The provider's hook masks only
# "secret" and "password" in the spark-submit command line it logs; this also covers e.g. ABFS's
# fs.azure.account.key.<account>.dfs.core.windows.net, S3A's fs.s3a.session.token, GCS's
# ...service.account.private.key and key/trust store passwords.
_SENSITIVE_PROPERTY = re.compile(
    r"secret|passw(or)?d|token|credential|private[._-]?key|access[._-]?key|account[._-]?key|api[._-]?key"
    r"|sas[._-]?key|keystore|truststore",
    re.IGNORECASE,
)


def is_sensitive_property(name: str) -> bool:
    return bool(_SENSITIVE_PROPERTY.search(name))


def mask_sensitive_conf(conf: dict[str, Any]) -> list[str]:
    """Register the values of credential properties with Airflow's secrets masker, which replaces
    them by ``***`` in the task log (spark-submit's command line, logged by the provider's hook,
    carries every property as ``--conf key=value``). Returns the names of the masked properties."""
    from airflow.sdk.log import mask_secret

    masked = []
    for name, value in conf.items():
        if value not in (None, "") and is_sensitive_property(name):
            mask_secret(str(value))
            masked.append(name)
    return sorted(masked)


def library_sources(package_dir: Path) -> list[Path]:
    return sorted(path for path in package_dir.rglob("*.py") if "__pycache__" not in path.parts)


def build_library_zip(spark_apps_dir: Path | None = None, build_dir: Path | None = None) -> Path:
    """Zip the library package into the build directory (atomically); returns the zip's path."""
    spark_apps_dir = spark_apps_dir or settings.SPARK_APPS_DIR
    build_dir = build_dir or settings.build_dir()
    package_dir = spark_apps_dir / settings.LIBRARY_PACKAGE
    sources = library_sources(package_dir)
    if not sources:
        raise FileNotFoundError(f"no Python sources under {package_dir}")
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(spark_apps_dir)).encode())
        digest.update(path.read_bytes())
    target = build_dir / f"{settings.LIBRARY_PACKAGE}-{digest.hexdigest()[:16]}.zip"
    if target.exists():
        return target
    return publish_archive(target, {str(path.relative_to(spark_apps_dir)): path.read_bytes() for path in sources})


def default_spark_conf() -> dict[str, str]:
    return {
        "spark.pyspark.python": settings.pyspark_python(),
        "spark.pyspark.driver.python": settings.pyspark_python(),
        **settings.extra_spark_conf(),
    }


class LibrarySparkSubmitOperator(SparkSubmitOperator):
    """SparkSubmitOperator that ships the freshly zipped library and the deployment's Spark conf,
    and fails without retrying when the application reports bad input or bad arguments."""

    def execute(self, context: Any) -> None:
        self.py_files = str(build_library_zip())
        self.conf = {**default_spark_conf(), **(self.conf or {})}
        # spark-submit's --jars replaces a spark.jars property instead of adding to it: both go
        # into --jars, with the tokeniser's scanner.
        self.jars = jars_value(self.jars, self.conf.pop("spark.jars", None), token_scanner_jar())
        mask_sensitive_conf(self.conf)
        # The driver runs beside spark-submit (client mode) and writes its refusal here.
        handle, error_file = tempfile.mkstemp(prefix="nbknn-error-", suffix=".txt")
        os.close(handle)
        self.env_vars = {**(self.env_vars or {}), ERROR_FILE_ENV: error_file}
        try:
            return super().execute(context)
        except AirflowException as exc:
            exit_code = spark_submit_exit_code(exc)
            if exit_code in NOT_RETRYABLE_EXIT_CODES:
                # The application's own reason first: it says what to fix.
                lines = [_read_reason(error_file), (
                    f"{self.task_id}: the Spark application refused its input or arguments "
                    f"(exit code {exit_code}); retrying would not help. {exc}"
                )]
                raise AirflowFailException("\n".join(line for line in lines if line)) from exc
            raise
        finally:
            os.unlink(error_file)


def _read_reason(error_file: str) -> str:
    """The application's one-line refusal, when it wrote one."""
    try:
        with open(error_file, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def spark_submit_exit_code(failure: AirflowException) -> int | None:
    """spark-submit's exit code, read from the failure the provider's hook raised (None when the
    failure is another one, e.g. a driver that could not be tracked: retried as usual)."""
    found = _SUBMIT_FAILURE.match(str(failure))
    return int(found.group(1)) if found else None


def spark_app(task_id: str, script: str, application_args: Any, **kwargs: Any) -> SparkSubmitOperator:
    """A task running ``spark_apps/<script>`` with the given (templated) arguments.

    spark-submit is always started with an argument list, never through a shell.
    """
    return LibrarySparkSubmitOperator(
        task_id=task_id,
        application=str(settings.SPARK_APPS_DIR / script),
        application_args=application_args,
        conn_id=settings.spark_conn_id(),
        name=f"nbknn-{task_id}",
        **kwargs,
    )


def spark_app_mapped(task_id: str, script: str, application_args_list: Any, **kwargs: Any):
    """Dynamically mapped Spark tasks: one task instance per argument list in ``application_args_list``
    (typically an XCom list computed by a plan task, e.g. one per model shard)."""
    return LibrarySparkSubmitOperator.partial(
        task_id=task_id,
        application=str(settings.SPARK_APPS_DIR / script),
        conn_id=settings.spark_conn_id(),
        name=f"nbknn-{task_id}",
        **kwargs,
    ).expand(application_args=application_args_list)
