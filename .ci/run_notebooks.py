"""Execute notebooks with nbclient, each in a fresh kernel of this Python; exit 1 if any cell
raised or wrote to stderr (a warning a student would see in red: fix its cause, or catch it
and explain it where it is the lesson), or if a course notebook (not one in solutions/) shows
no picture: the pictures must display inline in a fresh kernel.  Outputs are not written back: the notebooks stay stored
without outputs.

    python .ci/run_notebooks.py NOTEBOOK...
    python .ci/run_notebooks.py --requirements    # the `notebooks` extra of cytorch-edu
"""
import pathlib
import sys
import time


def requirements():
    """The `notebooks` extra's requirements, from the installed cytorch-edu's metadata."""
    from importlib.metadata import requires
    extra = [r.split(";")[0].strip() for r in requires("cytorch-edu") or ()
             if 'extra == "notebooks"' in r.replace("'", '"')]
    if not extra:
        raise SystemExit("the installed cytorch-edu has no 'notebooks' extra: reinstall it "
                         "from this checkout (pip install -e .)")
    return extra


def run(path):
    import nbclient
    import nbformat
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
        error = None
    except nbclient.exceptions.CellExecutionError as exc:
        error = str(exc)
    seconds = time.perf_counter() - start
    outputs = [out for cell in nb.cells for out in cell.get("outputs", [])]
    pictures = sum("image/png" in out.get("data", {}) for out in outputs)
    stderr = "".join(out.get("text", "") for out in outputs
                     if out.get("output_type") == "stream" and out.get("name") == "stderr")
    if error is None and stderr:
        error = f"{path} wrote to stderr:\n{stderr}"
    return error, seconds, pictures


def main(paths):
    failed = 0
    for path in map(pathlib.Path, paths):
        error, seconds, pictures = run(path)
        if error is None and pictures == 0 and path.parent.name != "solutions":
            error = f"{path} showed no picture (no image/png output in any cell)"
        status = "ok" if error is None else "FAILED"
        print(f"{status:6} {seconds:6.1f} s  {pictures:2d} pictures  {path}", flush=True)
        if error is not None:
            failed += 1
            print(error, file=sys.stderr)
    print(f"notebooks: {len(paths) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--requirements"]:
        print("\n".join(requirements()))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
