# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, installs rmscore, scores the shipped demo data with the shipped model,
#               builds pairs and shows what the scores and pairs look like (rmscore inspect)
#   make test   creates .venv, installs rmscore with its test extras, runs the test suite
# TORCH_SPEC picks the torch build: the default is the CPU wheel CI uses. On a GPU node, use your
# cluster's torch instead, e.g. `make test TORCH_SPEC="torch>=2.4"`, or pip install -e . into your env.
# The install stamp depends on TORCH_SPEC (recorded in .venv/.torch-spec), so a changed spec installs
# again into the existing .venv; `make clean` starts over.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test bench clean FORCE

# Rewritten only when TORCH_SPEC differs from the one recorded, so the stamp below goes stale then.
$(VENV)/.torch-spec: FORCE
	@mkdir -p $(VENV)
	@[ "$$(cat $@ 2>/dev/null)" = '$(TORCH_SPEC)' ] || echo '$(TORCH_SPEC)' > $@

$(BIN)/.installed: pyproject.toml $(VENV)/.torch-spec
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/rmscore score data/demo/hh_rlhf_demo.jsonl -o demo-out/scored --overwrite
	$(BIN)/rmscore build-pairs demo-out/scored -o demo-out/pairs.parquet --overwrite
	$(BIN)/rmscore inspect demo-out/scored --no-text
	$(BIN)/rmscore inspect demo-out/pairs.parquet --no-text
	@echo "The demo texts are HH-RLHF red-team material, so inspect ran with --no-text; drop it to see them."
	@echo "Open demo-out/pairs-inspect/report.html in a browser: the pairs to sort and filter (one file, no network)."
	@echo "Next: source $(VENV)/bin/activate   (puts rmscore and python on PATH), then the README's tour."

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python bench/run.py --preset cpu

clean:
	rm -rf $(VENV) demo-out
