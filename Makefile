# `make demo` and `make test` install the project first if needed (a stamp file records it).
PYTHON ?= python
STAMP := .install.stamp

.PHONY: install demo test test-all bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PYTHON) -m cofi_lightning.demo

test: $(STAMP)
	$(PYTHON) -m pytest -q

test-all: $(STAMP)
	$(PYTHON) -m pytest -q -m "slow or not slow"

bench: $(STAMP)
	$(PYTHON) bench/pruned_speed.py

lint: $(STAMP)
	ruff check . && ruff format --check .

clean:
	rm -f $(STAMP)
