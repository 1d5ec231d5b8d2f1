# `make demo` and `make test` install the project first if needed (a stamp file records it).
PYTHON ?= python
STAMP := .install.stamp

.PHONY: install demo demo-exact test test-slow test-all test-slurm slurm-up slurm-down bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The main job: the whole CoFi pipeline (teacher, prune, finetune, export) on a 2-layer MiniLM and
# an SST-2 subset, on CPU in minutes. Results land in outputs/demo/.../results.json.
# Offline when ../shared holds the models (no hub look-ups); otherwise the hub fallbacks are used.
OFFLINE := $(if $(wildcard ../shared/models),1,0)

demo: $(STAMP)
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE-$(OFFLINE)} WANDB_MODE=$${WANDB_MODE-offline} \
		$(PYTHON) train.py experiment=demo

# Prune MiniLM-L6 with random masks and check the compact model equals the masked one.
demo-exact: $(STAMP)
	$(PYTHON) -m cofi_lightning.tools.demo

test: $(STAMP)
	$(PYTHON) -m pytest -q

# The slow tests alone: subprocess runs of train.py (DDP, SIGTERM and resume, sweeps, Optuna),
# kill-in-every-stage resumes, full-split data. CI runs them after `make test`.
test-slow: $(STAMP)
	$(PYTHON) -m pytest -q -m "slow and not gpu and not slurm"

test-all: $(STAMP)
	$(PYTHON) -m pytest -q -m "not gpu and not slurm"

# Sweeps on a real SLURM scheduler (arrays, timeout requeue, preemption, srun-launched DDP, a
# failing job): the tests bring up a one-node cluster on this machine and stop it again. As root;
# installs slurm-wlm and munge with apt when absent. docs/clusters.md.
test-slurm: $(STAMP)
	$(PYTHON) -m pytest -q -m slurm tests/slurm

# That throwaway cluster by hand (partition `debug`), e.g. to try `hydra=submitit_slurm` sweeps.
slurm-up:
	bash scripts/slurm/cluster.sh up

slurm-down:
	bash scripts/slurm/cluster.sh down

bench: $(STAMP)
	$(PYTHON) scripts/pruned_speed.py
	$(PYTHON) scripts/train_step.py

lint: $(STAMP)
	ruff check . && ruff format --check .

clean:
	rm -f $(STAMP)
