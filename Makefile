# Everything a fresh machine needs (Python 3.11 and make) is set up from these rules.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint typecheck pytest redis-server demo bench clean

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

# pytest exits 5 when it collected nothing: that must never pass as success.
pytest: $(STAMP) redis-server
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/audian-fax demo --dest ./demo-faxes

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) demo-faxes .mypy_cache .ruff_cache
