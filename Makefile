# Developer and CI commands. Needs GNU make and a system python3; everything else
# is installed into $(VENV) by the stamp rule below.

PYTHON ?= python3
VENV = .venv
BIN = $(VENV)/bin
# Touched after a successful install; rebuilt when the packaging files change.
STAMP = $(VENV)/.installed-stamp
# The benchmark's own venv: sse_kit from this checkout plus the peers it is
# measured against (never in the package's extras).
BENCH_VENV = bench/.venv
BENCH_STAMP = $(BENCH_VENV)/.installed-stamp
BENCH_CLIENT = bench/out/client
CC ?= cc
# The oldest gunicorn sse_kit supports (setup.cfg: gunicorn>=23), in a venv of
# its own: the live tests that detach streams from gunicorn's worker run against
# it as well as against the newest one in $(VENV).
OLDEST_GUNICORN = 23.0.0
OLDEST_VENV = .venv-gunicorn23
OLDEST_STAMP = $(OLDEST_VENV)/.installed-stamp

.PHONY: screenshot venv test test-gunicorn-oldest lint docs dist demo bench bench-quick bench-smoke soak soak-smoke redis-capacity browser-deps clean distclean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[test,dev,redis]'
	touch $@

# bench-smoke, the chaos soak's smoke and the oldest gunicorn's run before the whole suite, so that
# pytest's summary of the whole suite is the last thing CI prints.
test: $(STAMP) browser-deps lint docs dist bench-smoke soak-smoke test-gunicorn-oldest
	$(BIN)/pytest

$(OLDEST_STAMP): setup.cfg pyproject.toml
	test -x $(OLDEST_VENV)/bin/python || $(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -e '.[test]'
	$(OLDEST_VENV)/bin/python -m pip install gunicorn==$(OLDEST_GUNICORN)
	touch $@

# The live tests of gunicorn's side of a stream (detaching, the worker class,
# the hooks) against the oldest gunicorn sse_kit supports.
test-gunicorn-oldest: $(OLDEST_STAMP)
	$(OLDEST_VENV)/bin/python -c 'import gunicorn; assert gunicorn.__version__ == "$(OLDEST_GUNICORN)", gunicorn.__version__'
	$(OLDEST_VENV)/bin/pytest tests/live/test_detached_live.py tests/live/test_stream_live.py

# Regenerate docs/demo.png, the README's screenshot of the demo (a browser test takes it).
screenshot: $(STAMP) browser-deps
	SSE_KIT_UPDATE_SCREENSHOT=1 $(BIN)/pytest tests/live/test_demo_browser.py

# The browser tests drive Debian's headless Chromium; install it when missing
# (needs root, as on CI and the dev machines). The tests fail, never skip, without it.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "installing chromium and chromium-driver (Debian packages) for the browser tests"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	fi

# The HTML docs: the narrative pages and the API reference generated from the
# docstrings; a warning (a broken link, a docstring naming a gone parameter) fails it.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

# The sdist and the wheel, into dist/, built with the dev venv's setuptools (no
# download) and checked as PyPI would render them (tests/test_packaging.py lists the wheel).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/twine check --strict dist/*

lint: $(STAMP)
	$(BIN)/ruff check sse_kit tests bench examples
	$(BIN)/mypy

# `make demo PORT=9000` serves it on another port; `make demo DEMO_BIND=0.0.0.0:9000`
# on another address too.
PORT ?= 8000
DEMO_BIND ?= 127.0.0.1:$(PORT)

demo: $(STAMP)
	$(BIN)/gunicorn -k sse_kit.gunicorn.ThreadWorker --threads 8 -w 1 \
		-c examples/demo/gunicorn_conf.py -b $(DEMO_BIND) 'demo.app:create_app()'

$(BENCH_STAMP): bench/requirements.txt setup.cfg pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -e . -r bench/requirements.txt
	touch $@

$(BENCH_CLIENT): bench/client.c
	mkdir -p bench/out
	$(CC) -O2 -Wall -o $@ bench/client.c

# Every system, every scenario; writes docs/benchmarks.md (~15-20 minutes).
bench: $(BENCH_STAMP) $(BENCH_CLIENT)
	ulimit -n $$(ulimit -Hn); $(BENCH_VENV)/bin/python -m bench

bench-quick: $(BENCH_STAMP) $(BENCH_CLIENT)
	ulimit -n $$(ulimit -Hn); $(BENCH_VENV)/bin/python -m bench --quick

# sse_kit and the hand-rolled pattern only (no peer to install); < 1 minute.
bench-smoke: $(STAMP) $(BENCH_CLIENT)
	$(BIN)/python -m bench --smoke

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis bench/out docs/_build
	find . \( -path ./$(VENV) -o -path ./$(OLDEST_VENV) \) -prune -o -name __pycache__ -type d \
		-exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(BENCH_VENV) $(OLDEST_VENV)

# The chaos soak (bench/chaos): gunicorn -w 2 with the Redis backplane through
# Sentinel (the worker class, then -k gthread with the hooks), then one worker
# without Redis, under churn, slow readers and faults; every event verified.
# `make soak MINUTES=30`; writes docs/reliability.md (and .png with matplotlib)
# and bench/out/chaos.md.
MINUTES ?= 10

soak: $(STAMP)
	$(BIN)/python -m pip install -q matplotlib  # docs/reliability.png; not a package dependency
	ulimit -n $$(ulimit -Hn); $(BIN)/python -m bench.chaos --minutes $(MINUTES)

# About a minute: 200 streams, each fault once (the worker class and no Redis).
soak-smoke: $(STAMP)
	$(BIN)/python -m bench.chaos --smoke

# How far one Redis stream carries the backplane (docs/redis.md, "Capacity"): publish
# and reader rates, Sentinel failover; about 2 minutes.
redis-capacity: $(STAMP)
	$(BIN)/python -m bench.redis_capacity
