# The two commands of README.md: `make up` serves, `make test` runs every test.
# Both create the environment they need first (.venv, all four frameworks).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.servegate-installed
# pip check reports this one line by design: tensorflow-serving-api is installed with
# --no-deps beside tensorflow-cpu (its metadata would pull the 1.9 GB CUDA tensorflow).
EXPECTED_PIP_CHECK := tensorflow-serving-api 2.21.0 requires tensorflow, which is not installed.
# and onnx2torch (the importer's ONNX -> torch converter) is installed with --no-deps: its
# metadata pulls torchvision, whose PyPI wheels fail beside the CPU torch.
EXPECTED_PIP_CHECK_2 := onnx2torch 1.5.15 requires torchvision, which is not installed.

.PHONY: up test lint env models clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -e '.[all]'
	$(PY) -m pip install -q --no-deps tensorflow-serving-api==2.21.0
	$(PY) -m pip install -q --no-deps onnx2torch==1.5.15
	@out=$$($(PY) -m pip check 2>&1 | grep -vxF -e '$(EXPECTED_PIP_CHECK)' -e '$(EXPECTED_PIP_CHECK_2)' | grep -v '^No broken requirements found' || true); \
	  if [ -n "$$out" ]; then echo "pip check: $$out"; exit 1; fi
	touch $(STAMP)

up: $(STAMP)
	$(VENV)/bin/servegate up $(ARGS)

models: $(STAMP)
	$(VENV)/bin/servegate models build

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Containers (docker/, README "Deploy with containers"). On a machine that cannot pull
# images: `make images` builds the local stand-ins, the host-side wheelhouse and every
# image (BuildKit, cached); `make compose-up` also brings the CPU stack up and waits
# until every service is healthy; `make compose-down` stops it, keeping the volumes.
COMPOSE := docker compose -f docker/compose.yaml -f docker/compose.offline.yaml
API_KEYS := docker/secrets/api_keys

.PHONY: images compose-up compose-down

images:
	docker/offline/prepare.sh all
	python3 docker/offline/build_images.py -f docker/compose.yaml -f docker/compose.offline.yaml \
	  --profile cpu --profile monitoring

$(API_KEYS):
	install -d -m 700 docker/secrets
	printf 'infer:%s\nadmin:%s\n' "$$(openssl rand -hex 16)" "$$(openssl rand -hex 16)" > $@
	chmod 644 $@  # read by uid 1000 in the gateway; the folder keeps it private
	@echo "API keys written to $@"

compose-up: images $(API_KEYS)
	$(COMPOSE) up -d --wait --no-build
	@echo "servegate: HTTP http://127.0.0.1:8000/v2  gRPC 127.0.0.1:8001  keys in $(API_KEYS)"

compose-down:
	$(COMPOSE) --profile '*' down
