"""fit's progress line in a terminal, in a log file and in a Jupyter notebook.

A terminal gets one line per epoch redrawn with ``\\r`` (never wider than the terminal while
it updates), a file or pipe one finished line per epoch and no ``\\r``, a notebook one display
output per epoch updated through its handle and nothing on stderr.
"""
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

from cytorch import Sequential, callbacks
from cytorch import layers as L

EPOCHS = 3
FINAL = re.compile(r"^Epoch (\d)/3 (\d+)/\2 \[=+\] - \S+ \d+[mu]?s/step - loss: [0-9.]+ - "
                   r"accuracy: [0-9.]+ - val_loss: [0-9.]+ - val_accuracy: [0-9.]+$")


def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = np.eye(3)[y][:, :, None, None] + 0.3 * rng.standard_normal((n, 3, 1, 1))
    return X.astype(np.float32), y


def model():
    net = Sequential([L.Input((3, 1, 1)), L.Flatten(), L.Dense(3, activation="softmax")],
                     seed=0)
    return net.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                       metrics=["accuracy"])


def train(bar):
    """Train with ``bar`` as the only progress display (fit's own is off)."""
    X, y = data()
    model().fit(X, y, batch_size=4, epochs=EPOCHS, verbose=0, validation_split=0.25,
                callbacks=[bar])


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_one_finished_line_per_epoch():
    log = io.StringIO()
    train(callbacks.ProgressBar(stream=log, max_rate=1e9))  # would redraw after every batch
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == EPOCHS, text
    for epoch, line in enumerate(lines, 1):
        match = FINAL.match(line)
        assert match and int(match.group(1)) == epoch, line


def test_a_terminal_gets_one_line_per_epoch_redrawn_within_its_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "64")
    screen = FakeTerminal()
    train(callbacks.ProgressBar(stream=screen, max_rate=1e9))
    text = screen.getvalue()
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == EPOCHS + 1
    for epoch, line in enumerate(lines[:-1], 1):
        frames = line.split("\r")
        assert frames[0] == "" and len(frames) > 10  # 18 steps, drawn after each but the last
        # while the epoch runs, a frame never reaches the last column (a wrapped line cannot
        # be redrawn with \r); the finished line is written in full
        assert all(len(frame.rstrip()) <= 63 for frame in frames[1:-1])
        assert all(frame.startswith(f"Epoch {epoch}/3 ") for frame in frames[1:])
        assert "ETA: " in frames[1] and "ETA" not in frames[-1]
        assert FINAL.match(frames[-1].rstrip()), frames[-1]
        assert len(frames[-1].rstrip()) > 64


def test_verbose_2_is_one_short_line_per_epoch_even_in_a_terminal():
    screen = FakeTerminal()
    train(callbacks.ProgressBar(verbose=2, stream=screen, max_rate=1e9))
    lines = screen.getvalue().splitlines()
    assert "\r" not in screen.getvalue() and len(lines) == EPOCHS
    assert re.match(r"^Epoch 3/3 - \S+ \d+[mu]?s/step - loss: [0-9.]+ - accuracy: ", lines[-1])
    assert "[" not in lines[-1]


def fake_ipython(monkeypatch, kernel=True):
    """Install a fake ``IPython`` whose ``get_ipython()`` is a kernel's shell (or a terminal's)
    and record what is displayed."""
    outputs = []

    class Handle:
        def __init__(self, data):
            self.frames = [data]
            outputs.append(self)

        def update(self, data, raw=False):
            assert raw
            self.frames.append(data)

    def display(data, raw=False, display_id=None):
        assert raw and display_id is True
        return Handle(data)

    shell = types.SimpleNamespace(kernel=object() if kernel else None)
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell
    ipython_display = types.ModuleType("IPython.display")
    ipython_display.display = display
    ipython.display = ipython_display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", ipython_display)
    return outputs


def test_a_notebook_gets_one_updated_output_per_epoch_and_nothing_on_stderr(monkeypatch,
                                                                            capsys):
    outputs = fake_ipython(monkeypatch)
    train(callbacks.ProgressBar(max_rate=1e9))
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    assert len(outputs) == EPOCHS
    for epoch, handle in enumerate(outputs, 1):
        assert len(handle.frames) > 10  # updated in place while the epoch ran
        assert all(set(frame) == {"text/plain"} for frame in handle.frames)
        final = handle.frames[-1]["text/plain"]
        assert FINAL.match(final) and final.startswith(f"Epoch {epoch}/3"), final


def test_fit_verbose_1_in_a_notebook_uses_the_display(monkeypatch, capsys):
    outputs = fake_ipython(monkeypatch)
    X, y = data()
    model().fit(X, y, batch_size=32, epochs=2, verbose=1)
    assert capsys.readouterr().err == ""
    assert [h.frames[-1]["text/plain"][:9] for h in outputs] == ["Epoch 1/2", "Epoch 2/2"]


def test_a_terminal_ipython_is_not_a_notebook(monkeypatch, capsys):
    outputs = fake_ipython(monkeypatch, kernel=False)
    X, y = data()
    model().fit(X, y, batch_size=32, epochs=2, verbose=1)
    assert outputs == []
    assert capsys.readouterr().err.count("\n") == 2  # capsys is not a tty: log lines


def test_an_explicit_stream_wins_over_the_notebook(monkeypatch):
    outputs = fake_ipython(monkeypatch)
    log = io.StringIO()
    train(callbacks.ProgressBar(stream=log))
    assert outputs == [] and len(log.getvalue().splitlines()) == EPOCHS


# -- the command line ---------------------------------------------------------------------------
TRAIN = [sys.executable, "-m", "cytorch", "train", "--model", "auto", "--size", "8",
         "--epochs", "3", "--batch-size", "16"]


def test_cytorch_train_into_a_log_file_writes_one_line_per_epoch(tmp_path):
    log = tmp_path / "log"
    with open(log, "w") as err:
        result = subprocess.run(TRAIN, stdout=subprocess.PIPE, stderr=err, text=True,
                                timeout=300)
    assert result.returncode == 0
    text = log.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    assert [line[:9] for line in lines] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"], text
    assert "Test accuracy:" in result.stdout


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal (POSIX)")
def test_cytorch_train_in_a_terminal_redraws_one_line_per_epoch():
    master, slave = os.openpty()
    env = {**os.environ, "COLUMNS": "70"}
    process = subprocess.Popen(TRAIN, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert process.wait(timeout=300) == 0
    text = b"".join(chunks).decode().replace("\r\n", "\n")  # the tty turns \n into \r\n
    lines = [line for line in text.split("\n") if line]
    assert len(lines) == 3, text
    for epoch, line in enumerate(lines, 1):
        frames = [f for f in line.split("\r") if f]
        assert all(frame.startswith(f"Epoch {epoch}/3 ") for frame in frames), line
        assert all(len(frame.rstrip()) < 70 for frame in frames[:-1])
        assert frames[-1].rstrip().endswith(tuple("0123456789"))


# -- a real kernel ------------------------------------------------------------------------------
NOTEBOOK_CELL = """
import numpy as np
import cytorch
from cytorch import layers as L
rng = np.random.default_rng(0)
y = rng.integers(0, 3, 96)
X = (np.eye(3)[y][:, :, None, None] + 0.3 * rng.standard_normal((96, 3, 1, 1))).astype("f4")
net = cytorch.Sequential([L.Input((3, 1, 1)), L.Flatten(), L.Dense(3, activation="softmax")],
                         seed=0)
net.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = net.fit(X, y, batch_size=4, epochs=3, validation_split=0.25)
"""


def test_a_real_notebook_keeps_one_clean_line_per_epoch(tmp_path, monkeypatch):
    for module in ("nbclient", "nbformat", "ipykernel"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module} (a Jupyter kernel), not installed")
    import nbclient
    import nbformat

    # a kernel spec for this very interpreter: the default 'python3' may be another Python
    spec = tmp_path / "kernels" / "cytorch-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cytorch test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(NOTEBOOK_CELL)])
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="cytorch-test").execute()
    outputs = notebook.cells[0].outputs
    assert [o["output_type"] for o in outputs] == ["display_data"] * EPOCHS, outputs
    for epoch, output in enumerate(outputs, 1):
        line = output["data"]["text/plain"]
        assert FINAL.match(line) and line.startswith(f"Epoch {epoch}/3"), line
