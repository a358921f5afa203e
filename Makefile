# The two set-up commands of the README: `make demo` and `make test`.
# Each creates or reuses .venv and installs what it needs (torch pinned to the CPU wheel).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   := demo-out

.PHONY: demo test install clean heteroatoms gpaw crystals

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[reference,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/electra-density examples/data/qm9_005128.xyz -o $(DEMO) --format cube --spacing 0.1 --margin 4 --png --overwrite
	$(VENV)/bin/electra-score $(DEMO)/qm9_005128.cube examples/data/qm9_005128.npz

test: $(STAMP)
	$(PY) -m pytest -q

# GPAW, for labelling crystals (README, "Labelling crystals"); `make test` runs its tests when it is
# installed and skips them otherwise. Debian's libxc, FFTW, OpenBLAS and LAPACK (apt-get: root, else sudo),
# then GPAW 26.7 built from PyPI against them, serial, with install/gpaw_siteconfig.py (GPAW_CONFIG), and
# its PAW datasets (gpaw-data).
GPAW_STAMP := $(VENV)/.gpaw
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

gpaw: $(GPAW_STAMP)

$(GPAW_STAMP): $(STAMP) install/gpaw_siteconfig.py
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq libxc-dev libfftw3-dev libopenblas-dev liblapack-dev
	GPAW_CONFIG=$(CURDIR)/install/gpaw_siteconfig.py $(PY) -m pip install -q -e '.[gpaw]'
	$(PY) -c "import gpaw, gpaw.cgpaw; print('GPAW', gpaw.__version__)"
	touch $@

# Training molecules with B, Si, P, S, Cl and Br (README, "Training on your data"): structures from
# QM9 SMILES and a list of common molecules by RDKit, then PySCF labels at the shared data's settings;
# reruns skip what exists.
HETERO ?= data/heteroatoms
LABEL  := OMP_NUM_THREADS=1 $(VENV)/bin/electra-label --conv-tol 1e-8 --grid-level 1

heteroatoms: $(STAMP)
	$(PY) -m pip install -q rdkit qm9pack
	$(PY) benchmarks/heteroatom_structures.py -o $(HETERO)/structures --count 600
	$(LABEL) $(HETERO)/structures/val/*.xyz -o $(HETERO)/records/val
	$(LABEL) $(HETERO)/structures/train/*.xyz -o $(HETERO)/records/train

# Training crystals (README, "Training on your data"): 596 structures (26 slabs) by benchmarks/crystal_structures.py,
# then GPAW labels at electra-label's crystal defaults; reruns skip what exists. Needs `make gpaw`.
CRYSTALS ?= data/crystals

crystals: $(GPAW_STAMP)
	$(PY) benchmarks/crystal_structures.py -o $(CRYSTALS)/structures
	OMP_NUM_THREADS=1 $(VENV)/bin/electra-label $(CRYSTALS)/structures/val/*.xyz -o $(CRYSTALS)/records/val
	OMP_NUM_THREADS=1 $(VENV)/bin/electra-label $(CRYSTALS)/structures/train/*.xyz -o $(CRYSTALS)/records/train

clean:
	rm -rf $(DEMO) build *.egg-info
