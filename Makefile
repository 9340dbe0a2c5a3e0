# Thin wrapper over CMake. `make demo` and `make test` work on a fresh Debian 12.
SHELL := /bin/bash
BUILD       ?= build
BUILD_ASAN  ?= build-asan
BUILD_CLANG ?= build-clang
BUILD_FUZZ  ?= build-fuzz
BUILD_REL   ?= build-release
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 600
CTEST_FLAGS ?= --output-on-failure -j $(JOBS)

.PHONY: all deps build demo test test-asan test-clang test-release test-python fuzz bench interop clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQTL_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Two NVFP4 checkpoints from the same master weights: Phi-3 (qkv/gate_up fused on
# disk, the layout of vLLM issue #39764) and Llama (split, shared global scales).
demo: build
	@rm -rf $(BUILD)/demo
	./$(BUILD)/qtl fixture --arch phi3 --scheme ct-nvfp4 -o $(BUILD)/demo/phi3-nvfp4
	./$(BUILD)/qtl fixture --arch llama --scheme ct-nvfp4 --scale-layout shared -o $(BUILD)/demo/llama-nvfp4
	./$(BUILD)/qtl inspect $(BUILD)/demo/phi3-nvfp4
	./$(BUILD)/qtl inspect $(BUILD)/demo/llama-nvfp4
	./$(BUILD)/qtl dequant $(BUILD)/demo/phi3-nvfp4 model.layers.0.self_attn.qkv_proj.weight_packed \
	    -o $(BUILD)/demo/qkv-f32.safetensors
	./$(BUILD)/qtl load $(BUILD)/demo/phi3-nvfp4 --tp 2 --stage loaded --params > $(BUILD)/demo/phi3-tp2.txt
	./$(BUILD)/qtl load $(BUILD)/demo/llama-nvfp4 --tp 2 --stage loaded --params > $(BUILD)/demo/llama-tp2.txt
	@sed -n '1p;/qkv_proj/p' $(BUILD)/demo/phi3-tp2.txt | head -8
	@if diff -q <(grep '^  model' $(BUILD)/demo/phi3-tp2.txt) <(grep '^  model' $(BUILD)/demo/llama-tp2.txt) >/dev/null; \
	    then echo "demo: phi3 (fused on disk) and llama (split) give identical tp=2 parameters, every scale slot included"; \
	    else echo "demo: parameters differ"; exit 1; fi

# The whole suite: gcc build, the same tests under ASan+UBSan, a clang build,
# and gcc's Release (-O3, where gcc finds more maybe-uninitialized paths).
test: deps build
	cd $(BUILD) && ctest $(CTEST_FLAGS)
	@$(MAKE) --no-print-directory test-asan test-clang test-release test-python

test-asan: deps
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug "-DQTL_SANITIZE=address;undefined" -DQTL_WERROR=ON >/dev/null
	@cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest $(CTEST_FLAGS)

test-clang: deps
	@CC=clang cmake -S . -B $(BUILD_CLANG) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQTL_WERROR=ON >/dev/null
	@cmake --build $(BUILD_CLANG) -j $(JOBS)
	cd $(BUILD_CLANG) && ctest $(CTEST_FLAGS)

test-release: deps
	@cmake -S . -B $(BUILD_REL) -DCMAKE_BUILD_TYPE=Release -DQTL_WERROR=ON >/dev/null
	@cmake --build $(BUILD_REL) -j $(JOBS)
	cd $(BUILD_REL) && ctest $(CTEST_FLAGS)

# The Python package: pip install . into a venv under $(BUILD), pytest (torch and vLLM tests
# run when `make interop` made its venv, else they are skipped with the reason printed).
test-python: build
	bash tests/python/run.sh $(BUILD)

# libFuzzer, every target FUZZ_SECONDS each (one after the other): file (safetensors
# header open + validate + read; grows tests/fuzz/corpus), index, config, plan and dequant
# (grow tests/fuzz/fuzz_<target>/). Reproducers land in $(BUILD_FUZZ)/artifacts/;
# FUZZ_FLAGS adds libFuzzer options (e.g. FUZZ_FLAGS=-runs=1000).
fuzz: deps
	@CC=clang cmake -S . -B $(BUILD_FUZZ) -DQTL_FUZZ=ON -DQTL_BUILD_TESTS=OFF >/dev/null
	@cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz_all
	@mkdir -p $(BUILD_FUZZ)/artifacts
	./$(BUILD_FUZZ)/fuzz_file -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -dict=fuzz/safetensors.dict \
	    -artifact_prefix=$(BUILD_FUZZ)/artifacts/file- $(FUZZ_FLAGS) tests/fuzz/corpus tests/data/bad tests/data/real
	./$(BUILD_FUZZ)/fuzz_index -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -dict=fuzz/index.dict \
	    -artifact_prefix=$(BUILD_FUZZ)/artifacts/index- $(FUZZ_FLAGS) tests/fuzz/fuzz_index
	./$(BUILD_FUZZ)/fuzz_config -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -dict=fuzz/config.dict \
	    -artifact_prefix=$(BUILD_FUZZ)/artifacts/config- $(FUZZ_FLAGS) tests/fuzz/fuzz_config
	./$(BUILD_FUZZ)/fuzz_plan -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -dict=fuzz/plan.dict \
	    -artifact_prefix=$(BUILD_FUZZ)/artifacts/plan- $(FUZZ_FLAGS) tests/fuzz/fuzz_plan
	./$(BUILD_FUZZ)/fuzz_dequant -max_total_time=$(FUZZ_SECONDS) -max_len=1024 \
	    -artifact_prefix=$(BUILD_FUZZ)/artifacts/dequant- $(FUZZ_FLAGS) tests/fuzz/fuzz_dequant

# qtl against the reference crate, ml_dtypes (and more, see tests/interop/interop.py):
# a virtualenv under $(BUILD) with pinned packages from PyPI. Optional, not part of `make test`.
# PARTS="reader vllm" runs only those parts.
interop: build
	@bash scripts/install-deps.sh interop
	python3 tests/interop/interop.py $(BUILD) $(PARTS)

bench: build
	./$(BUILD)/qtl bench header
	bash bench/bench_verify.sh ./$(BUILD)/qtl
	bash bench/bench_load.sh ./$(BUILD)/qtl $(BUILD)/bench-ct-fp8

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_CLANG) $(BUILD_FUZZ) $(BUILD_REL)
