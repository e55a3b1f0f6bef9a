# One entry point. Every target creates .venv and installs the project when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-workspace
DEMO_CUSTOMERS ?= 2000

.PHONY: demo test test-fast bench lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,spark,text-models]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(BIN)/custdyn demo $(DEMO_DIR) --customers $(DEMO_CUSTOMERS) --seed 7
	$(BIN)/custdyn --workspace $(DEMO_DIR) status
	$(BIN)/custdyn --workspace $(DEMO_DIR) timeline --sample --limit 25
	$(BIN)/custdyn --workspace $(DEMO_DIR) train-text --bulk --sample 1500
	$(BIN)/custdyn --workspace $(DEMO_DIR) analyze
	$(BIN)/custdyn --workspace $(DEMO_DIR) risk --top 10
	$(BIN)/custdyn --workspace $(DEMO_DIR) backlog --top 5

# tests spread over the machine's cores, one test file per worker at a time (a file's
# shared fixtures are built once); TEST_WORKERS=0 runs them in this process
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
