"""cytorch.viz in a fresh Jupyter kernel (run by nbclient): every picture shows inline as a
PNG, without ``%matplotlib inline``, once, whether it is the cell's value, made mid-cell or
passed to ``display``.  Skips without the notebook tooling (``pip install -e .[notebooks]``)."""
import base64

import pytest

pytest.importorskip("matplotlib")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

SETUP = """\
import sys
import numpy as np
import cytorch
from cytorch import layers as L, viz
from cytorch.callbacks import History
model = cytorch.Sequential([L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(2),
                            L.Flatten(), L.Dense(3, activation="softmax")],
                           input_shape=(8, 8, 1), seed=0)
X = np.random.default_rng(0).random((6, 8, 8, 1)).astype("float32")
y = np.array([0, 1, 2, 0, 1, 2])
h = History()
for epoch, loss in enumerate([1.0, 0.6, 0.4]):
    h.on_epoch_end(epoch, {"loss": loss, "val_loss": loss + 0.1})
"""

# (cell, what the outputs must be), one cell per case
CASES = {
    "history_plot": ("h.plot()", "one image"),
    "plot_history": ("viz.plot_history(h)", "one image"),
    "display": ("display(h.plot())", "one image"),
    "mid_cell": ("viz.plot_filters(model)\nprint('after')", "text then image"),
    "two_in_a_cell": ("viz.plot_history(h)\nviz.plot_history(h)", "two images"),
    "no_pyplot": ("print('matplotlib.pyplot' in sys.modules)", "text False"),
    "show_false": ("fig = viz.plot_history(h, show=False)", "nothing"),
    "value_of_a_later_cell": ("fig", "one image"),
    "filters": ("viz.plot_filters(model)", "one image"),
    "activations": ("viz.plot_activations(model, X[0], label=y[0])", "one image"),
    "confusion_matrix": ("viz.plot_confusion_matrix(y, model.predict(X))", "one image"),
    "misclassified": ("viz.plot_misclassified(X, y, model.predict(X))", "one image"),
    "saliency": ("viz.plot_saliency(model, X[:2], labels=y[:2])", "one image"),
    "grad_cam": ("viz.plot_grad_cam(model, X[:2], labels=y[:2])", "one image"),
    "convolution_steps": ("viz.plot_convolution_steps(np.eye(4), np.ones((2, 2)))",
                          "one image"),
}


@pytest.fixture(scope="module")
def executed():
    """Run SETUP and every case in one fresh kernel; return {case: outputs}."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP)]
    nb.cells += [nbformat.v4.new_code_cell(code) for code, _ in CASES.values()]
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    return dict(zip(CASES, nb.cells[1:]))


def images(outputs):
    return [o for o in outputs if "image/png" in o.get("data", {})]


@pytest.mark.parametrize("case", list(CASES))
def test_picture_shows_inline_in_a_fresh_kernel(executed, case):
    outputs = executed[case].outputs
    expected = CASES[case][1]
    assert not [o for o in outputs if o.output_type == "error"], outputs
    if expected == "nothing":
        assert outputs == []
        return
    if expected == "text False":
        assert outputs[0].text.strip() == "False", "viz must not import pyplot"
        return
    pngs = images(outputs)
    assert len(pngs) == {"one image": 1, "two images": 2, "text then image": 1}[expected], \
        [o.get("data", o.get("text")) for o in outputs]
    for o in pngs:
        assert base64.b64decode(o.data["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
        assert o.data["text/plain"].startswith("<Figure size")
    if expected == "text then image":
        assert outputs[0].output_type == "stream" and outputs[0].text == "after\n"
        assert outputs[-1] is pngs[0]
