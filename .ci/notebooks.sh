#!/usr/bin/env bash
# CI stage: execute every course notebook and its solutions top to bottom, each in a fresh
# Jupyter kernel (nbclient), and fail on a cell that raises or a course notebook that shows no
# picture; first the test of cytorch.viz's inline display in a fresh kernel.
#
#   bash .ci/notebooks.sh PYTHON      PYTHON: the python of a venv where cytorch is installed
#
# The notebook tooling (nbclient, nbformat, ipykernel, matplotlib) is the `notebooks` extra.
# Prints each notebook's time and picture count; the course asks for under a minute each on
# 2 cores (reported, not enforced: timings on a shared machine are noise).
set -euo pipefail
PYTHON=${1:?"usage: bash .ci/notebooks.sh PYTHON (the python of a venv with cytorch installed)"}
cd "$(dirname "$0")/.."
# The requirements of the `notebooks` extra, read from the metadata of the cytorch-edu that
# is installed in that venv (`pip install -e .[notebooks]` would rebuild every Cython module).
requirements=$("$PYTHON" .ci/run_notebooks.py --requirements)
# shellcheck disable=SC2086  # one requirement per word
"$PYTHON" -m pip install -q $requirements
# The pictures of cytorch.viz in a fresh kernel (skipped by the test run without nbclient).
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_viz_jupyter.py
"$PYTHON" .ci/run_notebooks.py notebooks/*.ipynb notebooks/solutions/*.ipynb
