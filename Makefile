# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench reliability skill up down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/flare demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	# two workers, each with its own broker and database; a file's tests stay together (module fixtures start once)
	$(BIN)/pytest -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/pytest -m slow -s tests/bench

# Every reliability check at full size; `make test` runs the short versions of the same checks.
reliability: $(STAMP)
	$(BIN)/pytest -o addopts=-ra --full tests/reliability

# The skill benchmark (rolling origin 2012-2015, daily 00 UT forecasts): table on stdout, report in var/skill/
skill: $(STAMP)
	$(BIN)/flare skill

up: $(STAMP)
	$(BIN)/flare up

down: $(STAMP)
	$(BIN)/flare down

clean:
	rm -rf $(VENV) var
