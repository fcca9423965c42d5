# Convenience targets; the README commands are the reference.
PY ?= .venv/bin/python

.PHONY: install test test-fast lint bench demo
install:
	python3 -m venv .venv && .venv/bin/pip install -q ".[test]"
test:
	$(PY) -m pytest -q
test-fast:
	$(PY) -m pytest -q -m "not slow and not e2e and not realdata"
lint:
	$(PY) -m ruff check .
demo:
	.venv/bin/flowhawk demo
bench:
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_model_speed.py
	$(PY) benchmarks/bench_score_memory.py
	$(PY) benchmarks/bench_refresh.py
	$(PY) benchmarks/bench_inbox.py
