# The two set-up commands of the README: `make demo` and `make test`.
# Each creates or reuses .venv and installs what it needs (torch pinned to the CPU wheel).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   := demo-out

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[reference,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/electra-density examples/data/qm9_005128.xyz -o $(DEMO) --format cube --spacing 0.1 --margin 4 --png
	$(VENV)/bin/electra-score $(DEMO)/qm9_005128.cube examples/data/qm9_005128.npz

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(DEMO) build *.egg-info
