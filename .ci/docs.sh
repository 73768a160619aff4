#!/usr/bin/env bash
# The documentation site, as CI builds it:  bash .ci/docs.sh PYTHON
#
# PYTHON is the interpreter of an existing virtual environment in which cytorch is installed
# (CI's test stage made it); this adds the `docs` extra to it, builds the site with warnings
# as errors (numpydoc's docstring checks included; the gallery runs every example), then checks
# every internal link of the built pages and, when a Chromium can be had, renders the gallery
# page of examples/visualize.py and a screenshot of the home page in it, headless.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:?usage: bash .ci/docs.sh PYTHON (the python of a venv with cytorch installed)}
OUT=docs/_build/html
start=$SECONDS

# the `docs` extra's requirements, read from the installed cytorch-edu's metadata: installing
# ".[docs]" itself would compile every kernel again
"$PYTHON" - > docs-requirements.txt <<'PY'
import importlib.metadata
import re
import sys
requirements = [r.split(";")[0] for r in importlib.metadata.requires("cytorch-edu") or []
                if re.search(r"""extra\s*==\s*["']docs["']""", r)]
if not requirements:
    sys.exit("docs: the installed cytorch-edu declares no 'docs' extra: reinstall it "
             "(pip install -e .) from this checkout")
print("\n".join(requirements))
PY
"$PYTHON" -m pip install -q -r docs-requirements.txt
rm docs-requirements.txt
rm -rf docs/_build docs/auto_examples  # from scratch: the gallery would reuse old runs
"$PYTHON" -m sphinx -W --keep-going -b html -q docs "$OUT"
echo "docs: built $OUT in $((SECONDS - start)) s"

# Debian's chromium for the browser check: on CI (root, Debian's packages reachable) it is
# installed if missing; where it cannot be had, the link check below still runs
BROWSER=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$BROWSER" && "${CI:-}" == "true" && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
        >/dev/null 2>&1 || echo "docs: chromium could not be installed; links only"
    BROWSER=$(command -v chromium || true)
fi
"$PYTHON" docs/check_site.py "$OUT" ${BROWSER:+--browser "$BROWSER"}
echo "docs: stage took $((SECONDS - start)) s"
