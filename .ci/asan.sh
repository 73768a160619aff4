#!/usr/bin/env bash
# The kernels under AddressSanitizer, as CI runs them:  bash .ci/asan.sh PYTHON
#
# PYTHON is the interpreter of a virtual environment that has cytorch's `test` extra installed
# (CI's test stage made it).  This copies the checkout to a scratch folder, rebuilds every
# compiled module there (cytorch's kernels and the locally-connected plugin's) with
# -fsanitize=address, checks that each module really is instrumented, and runs the kernel,
# bounds and plugin-kernel tests against that copy with the ASan runtime preloaded.  A read or
# write outside an array aborts the run with ASan's report (the first version of the im2col
# kernel had such a bug in `_col2im_image`; only this found it).
#
# Which tests: the files named in KERNEL_TESTS below, plus every test_*kernel*.py and
# test_*bounds*.py of tests/ and plugins/*/tests/.  A new kernel's test file belongs here:
# name it so, or add it to the list.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:?usage: bash .ci/asan.sh PYTHON (the python of a venv with cytorch[test] installed)}
start=$SECONDS

KERNEL_TESTS=(
    tests/test_conv.py tests/test_dilation.py tests/test_fast_paths.py tests/test_pool.py
    tests/test_dropout.py tests/test_batchnorm.py tests/test_isa.py tests/test_epilogue.py
    tests/test_finite_scan.py tests/test_winograd.py tests/test_fused_pool.py
)

command -v gcc >/dev/null || { echo "asan: gcc is needed (its libasan)" >&2; exit 1; }
LIBASAN=$(gcc -print-file-name=libasan.so)
LIBSTDCXX=$(gcc -print-file-name=libstdc++.so)
[[ -e "$LIBASAN" ]] || { echo "asan: gcc has no libasan.so ($LIBASAN)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cytorch-asan.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# the sources only: no module built by the normal install may come along
tar --exclude='*.so' --exclude='*.c' --exclude=build --exclude='*.egg-info' \
    --exclude=__pycache__ -cf - cytorch plugins tests setup.py pyproject.toml README.md \
    | tar -xf - -C "$WORK"
PLUGIN="$WORK/plugins/cytorch-locally-connected"

# -O1 (CYTORCH_OPT_LEVEL): ASan checks every access the source makes at any level, and the
# instrumented -O3 compile took twice as long (188 s of this stage on a quiet 2-core machine)
export CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g" LDFLAGS="-fsanitize=address"
export CYTORCH_OPT_LEVEL=1
(cd "$WORK" && "$PYTHON" setup.py -q build_ext --inplace --force) > "$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log"; echo "asan: the instrumented build failed" >&2; exit 1; }
(cd "$PLUGIN" && "$PYTHON" setup.py -q build_ext --inplace --force) >> "$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log"; echo "asan: the plugin's instrumented build failed" >&2; exit 1; }
unset CFLAGS LDFLAGS CYTORCH_OPT_LEVEL

# every compiled module must carry ASan's checks: a module built without them would pass
# whatever it does
modules=$(find "$WORK/cytorch" "$PLUGIN" -name '*.so')
[[ -n "$modules" ]] || { echo "asan: no module was built" >&2; exit 1; }
for so in $modules; do
    if ! nm -D "$so" | grep '__asan_init' >/dev/null; then
        echo "asan: $so is not instrumented (no __asan_init symbol)" >&2; exit 1
    fi
done
echo "asan: $(wc -w <<<"$modules") instrumented modules built in $((SECONDS - start)) s"

mapfile -t tests < <(printf '%s\n' "${KERNEL_TESTS[@]}";
                     cd "$WORK" && ls tests/test_*kernel*.py tests/test_*bounds*.py \
                                      plugins/*/tests/test_*kernel*.py \
                                      plugins/*/tests/test_*bounds*.py 2>/dev/null)
mapfile -t tests < <(printf '%s\n' "${tests[@]}" | sort -u)
for t in "${tests[@]}"; do
    [[ -e "$WORK/$t" ]] || { echo "asan: $t is listed but does not exist" >&2; exit 1; }
done

# The copy comes first on the path (the editable install of the checkout is found only after
# it); the first test proves which modules run.
export PYTHONPATH="$WORK:$PLUGIN"
export LD_PRELOAD="$LIBASAN $LIBSTDCXX" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
cd "$WORK"
"$PYTHON" - "$WORK" <<'PY'
import importlib, pathlib, pkgutil, sys
import cytorch._kernels as k
import cytorch_locally_connected
work = pathlib.Path(sys.argv[1]).resolve()
names = [m.name for m in pkgutil.iter_modules(k.__path__) if not m.name.startswith("__")]
loaded = [importlib.import_module(f"cytorch._kernels.{n}") for n in names]
loaded.append(importlib.import_module("cytorch_locally_connected._lc"))
for m in loaded:
    if work not in pathlib.Path(m.__file__).resolve().parents:
        sys.exit(f"asan: {m.__name__} was loaded from {m.__file__}, not the instrumented copy")
print(f"asan: {len(loaded)} modules load from the instrumented copy")
PY
# Two workers (pytest-xdist, in the test extra) on a 2-core machine: the instrumented tests are
# single-threaded Python most of the time, and ran 4-5 of this stage's 7 minutes one at a time.
# The float32 accuracy sweeps (marker `sweep`: tens of millions of values through the activation
# kernels, 3 of those minutes under ASan) check numbers, which the test stage does on the real
# build; their memory accesses are those of the kernels' own tests here.
workers=()
if "$PYTHON" -c "import xdist" 2>/dev/null; then workers=(-n "${ASAN_WORKERS:-2}"); fi
"$PYTHON" -m pytest -q -p no:cacheprovider "${workers[@]}" -m "not sweep" --durations=5 \
    "${tests[@]}"
echo "asan: stage took $((SECONDS - start)) s"
