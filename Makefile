# The two commands of the README: `make run` and `make test`. Everything else is for development.
.PHONY: run worker test unit integration lint typecheck lock schemas clean

VENV := .venv/bin

.venv/.bootstrapped: requirements-dev.lock pyproject.toml scripts/bootstrap
	scripts/bootstrap
	@touch $@

run: .venv/.bootstrapped  ## the main job: embedded broker, worker, load generator, live view (Ctrl-C stops)
	$(VENV)/observer-insights demo

worker: .venv/.bootstrapped  ## one worker (embedded broker when KAFKA_BOOTSTRAP_SERVERS is unset)
	$(VENV)/observer-insights worker

test: .venv/.bootstrapped  ## the whole test suite: lint, import layers, types, unit and integration tests
	$(VENV)/ruff check .
	$(VENV)/lint-imports
	$(VENV)/mypy
	$(VENV)/pytest

unit: .venv/.bootstrapped
	$(VENV)/pytest tests/unit

integration: .venv/.bootstrapped
	$(VENV)/pytest -m integration tests/integration

lint: .venv/.bootstrapped  ## ruff, and the import-layer contract (pyproject.toml)
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports

typecheck: .venv/.bootstrapped
	$(VENV)/mypy

lock:  ## re-pin every dependency after changing pyproject.toml
	$(VENV)/uv pip compile pyproject.toml --python-version 3.11 -o requirements.lock -q
	$(VENV)/uv pip compile pyproject.toml --extra embedded --extra dev --python-version 3.11 -o requirements-dev.lock -q

schemas: .venv/.bootstrapped  ## regenerate the JSON Schemas of every topic's records
	$(VENV)/python -m models.schemas schemas/

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
