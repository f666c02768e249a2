# The first two targets are the README's two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KAFKA_VERSION := 3.9.1
KAFKA_LIBS := .cache/kafka-$(KAFKA_VERSION)/libs

.PHONY: run test install kafka-jars lint fmt bench bench-quick clean rebuild faults

run: install
	$(BIN)/lynchpin up

test: install kafka-jars
	$(BIN)/python -m pytest

# The fault tests at full size (`make test` runs them reduced): crashes and outages, then the figures.
faults: install kafka-jars
	LYNCHPIN_FAULTS_SCALE=1 $(BIN)/python -m pytest -p no:cacheprovider tests/faults

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,kurrentdb]'
	touch $@

kafka-jars:
	@ls $(KAFKA_LIBS)/kafka_2.13-*.jar >/dev/null 2>&1 || mvn -q -B -f deploy/kafka/pom.xml \
		-Dmaven.repo.local=$(CURDIR)/.cache/m2 dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

rebuild: install
	$(BIN)/lynchpin rebuild

bench: install kafka-jars
	$(BIN)/python -m bench

bench-quick: install kafka-jars
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .cache data
