# Two commands do it all on a fresh machine (Python 3.11+, Java 17):
#   make demo   run the pipeline end to end through Airflow on a real corpus (local Spark, file:// data root)
#   make test   run the whole test suite
# Both create the virtual environment first when it is missing or out of date.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install test test-fast demo lock check-java clean

install: $(INSTALLED)

$(INSTALLED): requirements.txt constraints.txt
	@$(MAKE) --no-print-directory check-java
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	touch $@

check-java:
	@command -v java >/dev/null 2>&1 || { echo "Java 17 is required by Spark: install it (e.g. apt-get install openjdk-17-jre-headless) and retry" >&2; exit 1; }

test: install
	$(BIN)/python -m pytest

# Unit and DAG tests only: no Spark, no Airflow runs (seconds).
test-fast: install
	$(BIN)/python -m pytest tests/unit tests/dags

demo: install
	$(BIN)/python scripts/demo.py

# Re-resolve the full lock after changing requirements.txt.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements.txt
	.lock-venv/bin/pip freeze --exclude-editable > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf build airflow_home spark-warehouse .pytest_cache
