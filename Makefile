# Two commands do it all on a fresh machine (Python 3.11+, Java 17):
#   make demo   run the pipeline end to end through Airflow on a real corpus (local Spark, file:// data root)
#   make test   run the whole test suite
# Both create the virtual environment first when it is missing or out of date.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install test test-quick test-fast test-deploy chromium postgres demo airflow lint lock check-java clean

install: $(INSTALLED)

$(INSTALLED): requirements.txt constraints.txt pyproject.toml
	@$(MAKE) --no-print-directory check-java
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	# The project itself, editable: nbknn, nbknn_airflow and nbknn_local import from their folders.
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# A JDK: Spark needs java, the tokeniser's scanner (spark_apps/jvm) javac.
check-java:
	@command -v java >/dev/null 2>&1 && command -v javac >/dev/null 2>&1 || { echo "A Java 17 JDK is required (Spark runs on java, the tokeniser's scanner is built with javac): install it (e.g. apt-get install openjdk-17-jdk-headless) and retry" >&2; exit 1; }

# The whole suite (what CI runs): unit, Spark, DAG, end-to-end, reliability and deployment tests,
# on TEST_WORKERS pytest-xdist workers, one test module per unit (tests/conftest.py says why).
TEST_WORKERS ?= 2
PARALLEL := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: install chromium postgres
	$(BIN)/python -m pytest $(PARALLEL)

# The quick loop: everything but the tests that start real engines or kill jobs (markers
# cluster, services, reliability).
test-quick: install
	$(BIN)/python -m pytest $(PARALLEL) -m "not cluster and not services and not reliability"

# Unit and DAG tests only: no Spark, no Airflow runs (seconds).
test-fast: install
	$(BIN)/python -m pytest tests/unit tests/dags

# The browser test drives Debian's Chromium through Playwright (no browser download): install it
# when missing (as root; otherwise say how).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "The browser test needs Chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

# The compose-stack test runs the stack's metadata DB on Debian's PostgreSQL (server binaries only:
# no cluster is created or started by the package, the test makes its own): install it when
# missing (as root; otherwise say how).
postgres:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    mkdir -p /etc/postgresql-common/createcluster.d \
	    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/nbknn-no-main-cluster.conf \
	    && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	  else echo "The compose-stack test needs PostgreSQL: sudo apt-get install postgresql" >&2; exit 1; fi; }

# Deployment: the compose stack (static checks and `docker compose config`), its Airflow and Spark
# services started as local processes from docker-compose.yml (PostgreSQL, FAB auth), a Spark
# standalone cluster on 127.0.0.1, the UI in headless Chromium.
test-deploy: install chromium postgres
	$(BIN)/python -m pytest tests/deploy

demo: install
	$(BIN)/python scripts/demo.py

# Airflow UI on the embedded defaults (http://127.0.0.1:8080; PORT=... to change it). It listens on
# this machine only; HOST=0.0.0.0 opens it to the network (plain HTTP: mind who can reach it).
PORT ?= 8080
HOST ?= 127.0.0.1
airflow: install
	$(BIN)/python scripts/airflow_ui.py --port $(PORT) --host $(HOST)

# Re-resolve the full lock after changing requirements.txt.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements.txt
	.lock-venv/bin/pip freeze --exclude-editable > constraints.txt
	rm -rf .lock-venv

lint: install
	$(BIN)/ruff check dags plugins spark_apps tests scripts bench

clean:
	rm -rf build airflow_home spark-warehouse .pytest_cache

# Benchmarks (not tests): this pipeline vs MLlib / scikit-learn / the per-row kNN recipe on local[2].
# Writes bench/results/<name>.json and the table bench/results/README.md (about 45-60 min on a busy 2-core machine).
.PHONY: bench
bench: install
	$(BIN)/python bench/bench_nb.py
	$(BIN)/python bench/profile_nb_predict.py
	$(BIN)/python bench/profile_nb_vectorize.py
	$(BIN)/python bench/profile_nb_single_pass.py
	$(BIN)/python bench/bench_scale.py
	$(BIN)/python bench/bench_knn.py --sizes 50000 --reps 3
	$(BIN)/python bench/bench_demo.py
	$(BIN)/python bench/report.py

# The large sizes (about 14, 13 and 45 min on an idle 2-core machine): 20 Newsgroups
# resampled 20x, kNN at n = 200 000 euclidean, and cosine at n = 50 000 (two repetitions) and
# 200 000 (one: each side takes 11-15 min there).
# NB against MLlib (its own Tokenizer and the same tokens) and scikit-learn: 20 Newsgroups x1 with 5
# repetitions (runs of 1-3 s whose per-repetition ratios spread over 0.8x-1.6x on a shared host), x3
# and x20 with 3; ends with one `nb predict xN: ours/mllib=<time ratio>` line per scale.
.PHONY: bench-nb
bench-nb: install
	$(BIN)/python bench/bench_nb.py --scales 1,3 --reps 5 --large-reps 3 --name nb
	$(BIN)/python bench/bench_nb.py --scales 20 --large-reps 3 --name nb_x20
	$(BIN)/python bench/report.py
	@$(BIN)/python -c "import json; scales = [s for n in ('nb', 'nb_x20') for s in json.load(open(f'bench/results/{n}.json'))['scales']]; \
		[print(f\"nb predict x{s['scale']}: ours/mllib_loading_its_model={s['ratio_predict_per_rep_over_mllib_tokenizer_loaded']['median']}\") for s in scales]; \
		[print(f\"nb predict x{s['scale']}: ours/mllib={s['ratio_predict_ours_over_mllib_tokenizer']}\") for s in scales]"

# Exact all-points kNN on Spark (both exact modes, local[2]) against scikit-learn, FAISS flat and the
# per-row recipe, each in its own process: n = 50 000 (3 interleaved repetitions) and 200 000 (1),
# d = 128, k = 10, euclidean and cosine; ends with one `knn n=50000 ...: ours/faiss=<x>
# ours/sklearn=<y> agreement=<z>` line per metric. FAISS is a benchmark-only dependency, installed
# here when missing.
.PHONY: bench-knn bench-knn-kernel faiss
faiss: install
	@$(BIN)/python -c "import faiss" 2>/dev/null || $(BIN)/pip install --quiet faiss-cpu==1.15.1

bench-knn: faiss
	cd bench && ../$(BIN)/python bench_knn.py --sizes 50000,200000 --reps 3 --large-reps 1
	$(BIN)/python bench/report.py

# The exact kNN kernel alone (no Spark), the same baselines, n = 50 000.
bench-knn-kernel: faiss
	cd bench && ../$(BIN)/python bench_knn_kernel.py --reps 3

# The large NB scale: 20 Newsgroups resampled 20x (about 14 min on an idle 2-core machine).
.PHONY: bench-large
bench-large: install
	$(BIN)/python bench/bench_nb.py --scales 20 --large-reps 1 --name nb_x20
	$(BIN)/python bench/report.py
