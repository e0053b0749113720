# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
AZURITE := tools/node_modules/.bin/azurite

.PHONY: demo test bench lint format venv tools system-deps stepca clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

$(AZURITE): tools/package.json
	cd tools && npm ci --no-audit --no-fund --silent || npm install --no-audit --no-fund --silent
	touch $(AZURITE)

tools: $(AZURITE)

# Debian packages for the CA integration tests (pebble, CFSSL) and the dashboard browser test
# (chromium): installed when running as root (CI, these dev machines), otherwise their tests skip.
system-deps:
	@missing=""; \
	command -v pebble >/dev/null || missing="$$missing pebble"; \
	command -v cfssl >/dev/null || missing="$$missing golang-cfssl"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then echo "pebble, cfssl and chromium present"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "missing:$$missing and not root: their tests will skip (run 'sudo make system-deps')"; fi

# smallstep step-ca, built once from Debian's packages into .tools/step-ca/ (as root it installs them first;
# otherwise its tests skip locally, and fail under CI's RENEWAL_REQUIRE_SERVERS=1).
stepca:
	@bash tools/build-stepca.sh

demo: venv tools
	@case "$(DEMO_ARGS)" in *--stepca*) bash tools/build-stepca.sh ;; esac
	$(PY) -m renewal demo $(DEMO_ARGS)

test: venv tools system-deps stepca
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv tools
	$(PY) benchmarks/run_all.py

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) tools/node_modules .pytest_cache .ruff_cache .run test-artifacts .tools
