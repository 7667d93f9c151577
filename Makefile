# `make demo` and `make test` each set up what they need first; every step is
# skipped when its result is already in place.
VENV := .venv
PYTHON := $(VENV)/bin/python
DEMO_CONFIG := configs/gsam_tiny_demo.py
DEMO_WORK_DIR := work_dirs/demo
# Nothing in the demo or the tests may reach a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup data demo test clean-demo

setup:
	bash tools/setup_env.sh

data: setup
	$(PYTHON) tools/fetch_demo_data.py

demo: data
	$(PYTHON) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR)
	$(PYTHON) tools/test.py $(DEMO_CONFIG) "$$(cat $(DEMO_WORK_DIR)/last_checkpoint)" \
		--work-dir $(DEMO_WORK_DIR) --show-dir overlays
	$(PYTHON) tools/plot_logs.py $(DEMO_WORK_DIR)

test: data
	$(PYTHON) -m pytest tests -q

clean-demo:
	rm -rf $(DEMO_WORK_DIR)
