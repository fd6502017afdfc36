# One command each: `make repro` runs the pipeline, `make test` the tests. Each first brings .venv
# to what it needs (tools/install.sh: kd in editable mode, pinned by constraints.txt): the core
# for the pipeline, the core and the `test` extra (JAX, PyTorch, S3) for the tests. PYTHON=... picks
# the interpreter that creates .venv (default: python3.11, the tested version, else a newer one).
VENV := .venv
PY   := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install install-test backends deps check-install repro test bench bench-backends bench-data generations dag readme plots plots-libs ci-repro best shapes seeds tune exp register push pull verify report clean-venv

install:
	@bash tools/install.sh core

install-test:
	@bash tools/install.sh test

# Keras's other backends, for models with `training.backend: jax` or `torch`.
backends:
	@bash tools/install.sh jax,torch

# dvc.yaml's src/kd dependencies, written from each stage script's imports (tools/stage_deps.py):
# run it after changing what a stage imports; tests/test_dvc_yaml.py fails until then.
deps: install
	$(PY) tools/stage_deps.py

# What a new user's pip would download for kd and for its tests, from the public index alone
# (no local wheel folder, no extra index, no pip config): fails when a pin does not resolve there.
check-install: install
	@$(PY) tools/check_install.py

repro: install
	dvc repro

test: install-test
	$(PY) -m pytest

# Seconds per training step of distillation variants, each as a ratio to the step that does the same
# work but its method (docs/speed.md: What a distillation step costs); the other
# sections (precision, around the step, the data path, the views stage's forward pass); where a step's
# time goes (the profiler).
bench: install
	$(PY) bench/distill_step.py --only pairs rkd --record reports/bench/distill_step.json
	$(PY) bench/distill_step.py --only pairs --record reports/bench/distill_step_again.json  # do the ratios hold?
	$(PY) bench/distill_step.py --only precision fit data views --record reports/bench/sections.json
	$(PY) bench/step_profile.py --record reports/bench/step_profile.json

# The bench's pair rows under each Keras backend, one process each, into one record (docs/backends.md).
bench-backends: backends
	$(PY) bench/backends.py --record reports/bench/backends.json

# Memory and throughput of the data path: prepare and one training epoch on generated JPEG folders of
# 5,000 to 80,000 images (peak resident memory of each stage, images/s, ms/step). SIZES="5000x128 ..." to choose.
SIZES ?= 5000x128 20000x128 80000x128 23000x224
bench-data: install
	$(PY) bench/data_memory.py --sizes $(SIZES) --record reports/bench/data_memory.json

# Born-again generations: a distill entry with `generations: k` becomes k entries in params.yaml
# (<name>_g1 ... <name>_gk, each taught by the one before), which DVC makes k stages of.
generations: install
	$(PY) tools/generations.py

dag: install
	dvc dag

clean-venv:
	rm -rf $(VENV)

# Paste the comparison table of the last `dvc repro` and the multi-seed reports into README.md and
# docs/*.md, wherever their markers are.
readme: install
	$(PY) tools/readme.py

# `dvc plots show`'s page, made to open with no network: dvc_plots/index.html with Vega, Vega-Lite and
# vega-embed inlined (tools/plots_page.py). plots-libs only installs those, pinned, from the npm
# registry into .kd-node/ (once; a no-op when they are there): .ci/run calls it before the tests.
plots: install
	$(PY) tools/plots_page.py

plots-libs:
	@python3 tools/plots_page.py --install-only

# A configuration is params.yaml plus the `dvc exp run -S` overrides of configs/<name>.txt.
overrides = $$(grep -v -e '^\#' -e '^[[:space:]]*$$' configs/$(1).txt | sed 's/^/-S /')

# CI: the pipeline on the small config of configs/ci.txt.
ci-repro: install
	dvc exp run $(call overrides,ci)

# The best configuration (configs/best.txt), run in the workspace as a DVC experiment: its
# results stay there for `dvc metrics show`, and `dvc exp show` lists it beside the others.
best: install
	dvc exp run $(call overrides,best)

# Your own images and teacher, worked through (configs/shapes.txt): a folder of shape images in class
# folders, a MobileNetV3Small trained outside kd and saved to a file, distilled to a TA and a student.
shapes: install
	test -d sources/shapes || $(PY) tools/make_shapes.py --split
	test -f teachers/shapes_mobilenet.keras || $(PY) tools/train_teacher.py
	dvc exp run $(call overrides,shapes)

# One configuration over several seeds, as queued experiments; the mean ± std report goes to
# reports/seeds/<CONFIG>.md. CONFIG is default (params.yaml as it is) or a configs/<name>.txt.
# MODEL_SEEDS="a b": vary those models' own seed instead (one teacher, trained once).
CONFIG ?= default
SEEDS  ?= 0 1 2
VERSUS ?=
JOBS   ?= 1
MODEL_SEEDS ?=
seeds: install
	$(PY) tools/seeds.py $(CONFIG) --seeds $(SEEDS) --jobs $(JOBS) $(if $(VERSUS),--versus $(VERSUS)) \
		$(if $(MODEL_SEEDS),--model-seeds $(MODEL_SEEDS))

# A distilled model's temperature, soft-target weight and learning rate (params.yaml's tune: section)
# searched on the validation split, each trial a DVC experiment; then the best against the current
# settings on the test split over tune.seeds. Report: reports/tune/<MODEL>.md. CONFIG as for seeds.
MODEL ?= student
tune: install
	$(PY) tools/tune.py $(MODEL) $(if $(filter-out default,$(CONFIG)),--config $(CONFIG))

# The experiments of this commit: the params that differ, then the accuracies that moved.
exp: install
	@$(PY) tools/experiments.py

# Register this commit's shipped models as version VERSION in DVC's model registry (GTO tags),
# so that `dvc artifacts get <repo> student-int8` fetches them (from the cache or the remote).
VERSION ?=
register: install
	@test -n "$(VERSION)" || { echo "usage: make register VERSION=v1.0.0"; exit 1; }
	for artifact in student-int8 student-tflite student-savedmodel student teacher teacher-int8; do \
		$(VENV)/bin/gto register $$artifact HEAD --version $(VERSION); done

# The DVC cache and run-cache to and from the default remote (a folder beside the repository unless
# overridden: docs/teams.md, "Share results"), so that others `make pull` instead of retraining.
push: install
	@$(PY) tools/remote.py push

pull: install
	@$(PY) tools/remote.py pull

# Fails when any stage is out of date or any output is missing.
verify:
	dvc status --quiet || { dvc status; echo "stage outputs missing or out of date"; exit 1; }

# A Markdown report of what moved against BASE (a git revision): metrics, params, comparison.
BASE ?= HEAD
report:
	@echo "## Metrics ($(BASE) → workspace)"; echo
	@dvc metrics diff $(BASE) --md
	@echo; echo "## Params ($(BASE) → workspace)"; echo
	@dvc params diff $(BASE) --md
	@echo; echo "## Comparison"; echo
	@cat reports/comparison.md
