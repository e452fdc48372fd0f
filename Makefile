# Two commands work on a fresh clone: `make demo` and `make test`. Both install what is missing.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .make/installed

.PHONY: install test demo bench clean

install: $(STAMP)

# torch and triton only where none is installed: a CUDA torch ships the triton it was built with.
# The editable install builds fastmask._C in place, so tests run the compiled kernels.
$(STAMP): pyproject.toml setup.py $(wildcard csrc/*.cpp csrc/*.h)
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PYTHON) -c "import triton" 2>/dev/null || $(PIP) install triton==3.9.0
	$(PIP) install -e ".[test]"
	@mkdir -p $(dir $@) && touch $@

test: install
	FASTMASK_REQUIRE_CPP=1 $(PYTHON) -m pytest

demo: install
	$(PYTHON) -m fastmask.demo

bench: install
	$(PYTHON) -m pytest bench --benchmark-only

clean:
	rm -rf .make build *.egg-info fastmask/_C*.so
