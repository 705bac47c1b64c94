# The two commands a newcomer needs:  make demo  (see it run)  and  make test  (prove it).
# Both set up everything on a fresh machine first (system packages, virtualenv, Kafka jars).
.PHONY: install demo test test-unit typecheck up down status lint bench

VENV := .venv
PY := $(VENV)/bin/python
WP := $(VENV)/bin/walletpipe

install:
	bash infra/bootstrap.sh

demo: install
	$(WP) demo --tps 50 --seconds 20

test: install
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -p no:cacheprovider tests

typecheck: install
	$(VENV)/bin/mypy

test-unit: install
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

up: install
	$(WP) up

down:
	$(WP) down

status:
	$(WP) status

lint:
	$(VENV)/bin/ruff check .
