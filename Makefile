# overlay-tui: `make run` and `make test` do all the set-up on a fresh Debian 12 machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Binaries the lab and the runbook need, and the Debian packages that bring them.
DEB_BINS := /usr/sbin/dockerd:docker.io /usr/bin/etcd:etcd-server /usr/bin/etcdctl:etcd-client \
            /usr/sbin/sshd:openssh-server /usr/bin/ssh:openssh-client /usr/bin/ssh-keygen:openssh-client \
            /usr/bin/tcpdump:tcpdump /bin/busybox:busybox-static /sbin/ip:iproute2 /bin/ping:iputils-ping \
            /usr/bin/tshark:tshark /usr/bin/editcap:wireshark-common

.PHONY: run test lint setup deps venv lab-up lab-down screenshots bench clean

run: setup
	@$(BIN)/overlay-tui lab up
	@$(BIN)/overlay-tui

test: setup lint
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

# The type checker proves LiveService and RecordedService satisfy the Service protocol; ruff keeps the rest tidy.
lint: setup
	@$(BIN)/ruff check core tui tests bench
	@$(BIN)/mypy

setup: deps venv

# Install only the Debian packages whose binaries are missing (quick when all are there).
deps:
	@missing=""; for pair in $(DEB_BINS); do bin=$${pair%%:*}; pkg=$${pair##*:}; \
	  [ -x "$$bin" ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  pkgs=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	  echo "installing Debian packages:$$pkgs"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root (or: sudo apt-get install $$pkgs)"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs >/dev/null || exit 1; \
	fi

# The virtual environment is rebuilt only when pyproject.toml changes.
venv: $(STAMP)
$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV) || { echo "python3 -m venv failed: apt-get install python3-venv"; exit 1; }
	@echo "installing overlay-tui and its test tools into $(VENV)"
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
	@$(BIN)/python -c 'import textual, etcd3, docker, asyncssh, scapy, pytest' && touch $(STAMP)

lab-up: setup
	@$(BIN)/overlay-tui lab up

lab-down: setup
	@$(BIN)/overlay-tui lab down

screenshots: setup
	@$(BIN)/python tests/scenes.py screenshots

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
