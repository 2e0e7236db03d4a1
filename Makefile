# make demo [FAMILY=flow] | make demo-vision | make test | make bench-<name>; each sets up .venv first if needed.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.genpol-setup
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: setup demo demo-vision test lint bench-multimodal bench-planner bench-executor bench-execution bench-faults clean

setup: $(STAMP)

$(STAMP): tools/setup.sh setup.py package.xml requirements/runtime.txt requirements/ros-wheels.txt \
          requirements/test.txt
	bash tools/setup.sh $(VENV)
	@touch $@

demo: setup
	$(BIN)/genpol demo --family $(or $(FAMILY),flow) $(if $(OUT),--out $(OUT))

demo-vision: setup
	$(BIN)/genpol demo --vision --family $(or $(FAMILY),flow) $(if $(OUT),--out $(OUT))

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src test launch tools
	$(BIN)/mypy

bench-multimodal: setup
	$(BIN)/genpol bench multimodal --out $(or $(OUT),bench-results/multimodal)

bench-planner: setup
	$(BIN)/genpol bench planner --out $(or $(OUT),bench-results/planner) $(if $(BASELINE),--baseline $(BASELINE))

bench-executor: setup
	$(BIN)/genpol bench executor --out $(or $(OUT),bench-results/executor)

bench-execution: setup
	$(BIN)/genpol bench execution --out $(or $(OUT),bench-results/execution)

bench-faults: setup
	$(BIN)/genpol bench faults --out $(or $(OUT),bench-results/faults) $(if $(POLICY),--policy $(POLICY))

clean:
	rm -rf build install log bench-results demo-output* .pytest_cache
