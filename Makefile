# Developer and CI commands. Needs GNU make and a system python3; everything else
# is installed into $(VENV) by the stamp rule below.

PYTHON ?= python3
VENV = .venv
BIN = $(VENV)/bin
# Touched after a successful install; rebuilt when the packaging files change.
STAMP = $(VENV)/.installed-stamp

.PHONY: screenshot venv test lint demo bench bench-smoke browser-deps clean distclean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[test,dev,redis]'
	touch $@

test: $(STAMP) browser-deps lint
	$(BIN)/pytest

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

lint: $(STAMP)
	$(BIN)/ruff check sse_kit tests
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/gunicorn -k gthread --threads 64 -w 1 -c sse_kit/demo/gunicorn_conf.py \
		-b 127.0.0.1:8000 'sse_kit.demo.app:create_app()'

bench: $(STAMP)
	$(BIN)/python -m bench

bench-smoke: $(STAMP)
	$(BIN)/python -m bench --smoke

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis bench/out
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
