# Two commands do everything: `make demo` and `make test`. Each sets up what it needs
# (Debian libraries for Open3D when run as root, a .venv with the CPU torch wheel, pcseg
# itself) and re-running them skips what is already done.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pcseg-installed
TORCH  ?= torch==2.13.0
DEBS   := libusb-1.0-0 libvulkan1 mesa-vulkan-drivers libegl1 libgl1

.PHONY: demo test setup system-deps clean

demo: setup
	$(BIN)/pcseg demo $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

setup: system-deps $(STAMP)

# Open3D needs libusb to import and Mesa's Vulkan/EGL to render headless on the CPU.
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else \
	  for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo "note: Debian package $$p is missing (needed for Open3D; install it as root)"; done; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.py pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install -q "$(TORCH)" 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import torch, pcseg, open3d" >/dev/null
	@# compile the native sparse kernels now (about a minute, once), not inside the first run
	$(BIN)/python -c "from pcseg.sparse import native; native.available()"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
