# Everything a fresh machine needs (Python 3.11 and make) is set up from these rules.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# test-oldest: the lowest releases the bounds in pyproject.toml allow, in a venv of their own.
OLDEST := .venv-oldest
OLDEST_BIN := $(OLDEST)/bin
OLDEST_STAMP := $(OLDEST)/.installed-stamp
UV_VERSION := 0.13.8
# The tests that exercise each dependency, about three minutes (the rest, and the slow end-to-end
# runs, are left to the newest releases in `make test`).
OLDEST_TESTS := tests/core tests/downloads tests/webhooks tests/emulator tests/redis tests/telemetry tests/cli/test_cli.py \
	tests/plugin tests/test_event_loops.py tests/test_public_apis_only.py

# pytest exits 5 when it collected nothing: that must never pass as success.
FAIL_ON_NO_TESTS = rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

.PHONY: install test lint typecheck pytest redis-server demo bench test-oldest clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The Redis tests start (and stop) their own redis-server on a free loopback port, so it must be
# installed: Debian's package is installed here when missing (as root), else this fails. Never skipped.
redis-server:
	@scripts/redis-test-server.sh ensure

pytest: $(STAMP) redis-server
	@$(BIN)/python -m pytest $(PYTEST_ARGS); $(FAIL_ON_NO_TESTS)

test: lint typecheck pytest

# Every direct dependency (runtime, extras and test tools) at the lowest release its bound allows,
# transitive ones at their newest (uv's lowest-direct); the venv is made anew whenever the bounds
# change, since uv never downgrades what a venv already holds. check-oldest.py fails if any runtime
# dependency drifted above its bound.
$(OLDEST_STAMP): pyproject.toml
	rm -rf $(OLDEST)
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST_BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(OLDEST_BIN)/uv pip install --quiet --python $(OLDEST_BIN)/python --resolution lowest-direct -e '.[dev]'
	$(OLDEST_BIN)/python scripts/check-oldest.py
	touch $(OLDEST_STAMP)

# tests/examples runs uvicorn's Server.run, which before uvicorn 0.36 sets uvloop's event loop policy
# for the whole process (later asyncio tests would run on uvloop): it gets a pytest of its own.
test-oldest: $(OLDEST_STAMP) redis-server
	@$(OLDEST_BIN)/python -m pytest $(OLDEST_TESTS) -m 'not slow' $(PYTEST_ARGS); $(FAIL_ON_NO_TESTS)
	@$(OLDEST_BIN)/python -m pytest tests/examples -m 'not slow' $(PYTEST_ARGS); $(FAIL_ON_NO_TESTS)

demo: $(STAMP)
	$(BIN)/audian-fax demo --dest ./demo-faxes

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(OLDEST) demo-faxes .mypy_cache .ruff_cache
