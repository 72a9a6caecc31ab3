# The one image of the compose stack: Airflow (api-server, scheduler, dag-processor, triggerer,
# init) AND the Spark standalone master and workers.
#
# Spark tasks run spark-submit in client mode inside the Airflow scheduler container (standalone
# clusters cannot run Python drivers in cluster deploy mode), so the driver needs Java and the same
# Spark and Python versions as the executors. Building master, workers and Airflow from this one
# image makes that true by construction: one Python (the base image's 3.11), one pyspark (pinned in
# requirements.txt / constraints.txt), one JVM.
#
#   docker compose build          (see docker-compose.yml and .env.example)
FROM apache/airflow:3.3.2-python3.11

USER root
# Java for the Spark JVMs (driver, master, workers), a JDK because the Spark tasks compile the
# tokeniser's scanner (spark_apps/jvm) with javac; procps for Spark's scripts (ps). Spark 4 runs on
# Java 17 and 21. The apache/airflow 3.3 images are built on Debian 12 (bookworm), whose only
# OpenJDK is 17; Debian 13 (trixie) ships 21 and no 17. Whichever of the two the base release has is
# installed, so the build does not break when the base image moves to trixie; the check below
# fails the build on any other Java.
RUN . /etc/os-release && echo "base image: Debian ${VERSION_ID} (${VERSION_CODENAME})" \
    && apt-get update \
    && java_package="$(for p in openjdk-17-jdk-headless openjdk-21-jdk-headless; do \
           apt-cache show "$p" >/dev/null 2>&1 && { echo "$p"; break; }; done)" \
    && test -n "$java_package" \
    && apt-get install -y --no-install-recommends "$java_package" procps \
    && apt-get autoremove -yqq --purge \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sfn "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /usr/lib/jvm/spark-java
ENV JAVA_HOME=/usr/lib/jvm/spark-java

USER airflow
# The project's pinned requirements, resolved against the full lock. Naming apache-airflow with the
# image's own version keeps pip from up- or downgrading Airflow itself (the image's documented way
# of adding packages); `pip check` fails the build if the lock disagrees with what the image holds.
COPY --chown=airflow:0 requirements.txt constraints.txt /opt/nbknn/
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
        -r /opt/nbknn/requirements.txt -c /opt/nbknn/constraints.txt \
    && pip check

# The project itself, editable, at the paths the stack mounts its folders on: nbknn_airflow imports
# nbknn.contract, so the Airflow processes need the library importable, and an editable install makes
# the mounted folders (docker-compose.yml: ./plugins, ./spark_apps) the code that runs.
COPY --chown=airflow:0 pyproject.toml README.md /opt/airflow/
COPY --chown=airflow:0 spark_apps /opt/airflow/spark_apps
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 scripts /opt/airflow/scripts
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
    && python -c "import nbknn.contract, nbknn_airflow.settings"

# Fail the build, not the first DAG run, when a version drifts.
RUN java -version 2>&1 | grep -Eq 'version "(17|21)[."]' && javac -version \
    && python -c "import sys, pyspark, airflow; \
assert sys.version_info[:2] == (3, 11), sys.version; \
assert pyspark.__version__ == '4.2.0', pyspark.__version__; \
assert airflow.__version__ == '3.3.2', airflow.__version__" \
    && command -v spark-class spark-submit

# Spark's classes in a class-data-sharing archive, made by a short local application (about a
# minute): the drivers and executors of the stack's Spark tasks map them from it instead of loading
# and verifying them from the jars (docker-compose.yml: SPARK_SUBMIT_OPTS,
# spark.executor.extraJavaOptions). It holds this image's JDK and Spark, so it is built here.
RUN python -m nbknn_local.jvm /opt/airflow/jvm/spark-classes.jsa

# Owned by the airflow user, so that the named volumes mounted here are writable by it.
RUN mkdir -p /opt/airflow/logs /opt/airflow/build /opt/airflow/spark-work
