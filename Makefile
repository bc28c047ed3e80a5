# Two entry points: `make demo` and `make test`. Both create .venv idempotently.
# As root `make test` also starts a local SLURM cluster and runs the slurm tests (.ci/run does).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := resources/demo
# Patients per modality of the demo cohort (96 MR + 96 CT): the held-out sets a study needs to
# show its planted effect with confidence (docs/synthetic_cohort.md, power calculation)
DEMO_PATIENTS := 96
CORES ?= all

.PHONY: install demo test test-slurm slurm-up slurm-down lint demo-data clean-results

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# Reinstall when the pins change or the venv is new; one pip call resolves the whole pinned set.
$(STAMP): pyproject.toml $(VENV)/pyvenv.cfg
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip check
	touch $(STAMP)

## make install: only the virtual environment with the pinned stack (for your own cohort: README,
## "Bring your own cohort")
install: $(STAMP)

# Written again when the generator changes (e.g. new clinical columns that a study reads) or
# when this file does (the demo's size).
$(DEMO)/cohort.tsv: $(wildcard workflow/lib/hccrad/synth/*.py) Makefile | $(STAMP)
	$(BIN)/hccrad synth --out $(DEMO) --seed 42 --patients $(DEMO_PATIENTS)

demo-data: $(DEMO)/cohort.tsv

## make demo: install, write the synthetic demo cohort, run the whole workflow on it with the demo
## overlay (config/demo.yaml: CPU-sized models, listed in the summary and the report), then build
## the HTML report (results/report.html; the text summary is results/summary.md)
DEMO_OVERLAY := --config overlay=config/demo.yaml
demo: $(STAMP) $(DEMO)/cohort.tsv
	$(BIN)/snakemake --profile config/profiles/local --cores $(CORES) $(DEMO_OVERLAY)
	$(BIN)/snakemake --profile config/profiles/local --report results/report.html $(DEMO_OVERLAY)

## make test: install, then lint and run the test suite. As root (CI) it also starts the local
## single-node SLURM cluster and runs the `slurm` tests in the same session, where they compare
## with the workflow tests' local run instead of repeating it; they fail (never skip) when the
## cluster does not start. SLURM=0 leaves them out; a non-root user gets them left out, with a note.
SLURM ?= $(shell [ "$$(id -u)" = 0 ] && echo 1 || echo 0)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
ifeq ($(SLURM),1)
	bash tests/slurm/start_local_slurm.sh
	$(BIN)/python -m pytest -m 'not gpu and not slow'
else
	@echo "make test: the slurm tests are left out (they need root; make test-slurm runs them alone)"
	$(BIN)/python -m pytest
endif

## make test-slurm: start the local single-node SLURM cluster (needs root: apt-get and system
## daemons), then run only the `slurm` tests against it
test-slurm: $(STAMP) slurm-up
	$(BIN)/python -m pytest -m 'slurm and not slow' tests/test_slurm.py

slurm-up:
	bash tests/slurm/start_local_slurm.sh

slurm-down:
	bash tests/slurm/stop_local_slurm.sh

## make lint: ruff, snakefmt and Snakemake's linter (on the demo cohort, which it writes if needed)
lint: $(STAMP) $(DEMO)/cohort.tsv
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint $(DEMO_OVERLAY)

clean-results:
	rm -rf results .snakemake
