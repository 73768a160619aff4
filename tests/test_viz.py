"""cytorch.viz: every figure renders on the Agg canvas and is saved as a real PNG of the
figure's pixel size; without matplotlib, a clear ImportError names the extra to install."""
import struct
import sys

import numpy as np
import pytest

import cytorch
from cytorch import layers as L
from cytorch import viz
from cytorch.callbacks import History

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from the IHDR chunk, which a PNG must start with."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_SIGNATURE, "not a PNG file"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def check_png(fig, path):
    """The file is a PNG of the figure's size in pixels, and not a blank canvas."""
    width, height = (int(round(v)) for v in fig.get_size_inches() * fig.dpi)
    assert png_size(path) == (width, height)
    pixels = imread(path)
    assert pixels.shape[:2] == (height, width)
    assert pixels[..., :3].std() > 0.01, "the image is blank"


@pytest.fixture
def model():
    return cytorch.Sequential([L.Conv2D(6, 3, activation="relu"), L.MaxPooling2D(2),
                               L.Conv2D(4, (3, 2), padding="same"), L.Dropout(0.5),
                               L.AveragePooling2D(2), L.Flatten(), L.Dense(10)],
                              input_shape=(12, 12, 1), seed=0)


def fake_history():
    h = History()
    for epoch, (loss, acc) in enumerate([(2.0, 0.3), (1.1, 0.6), (0.6, 0.8), (0.4, 0.9)]):
        h.on_epoch_end(epoch, {"loss": loss, "accuracy": acc,
                               "val_loss": loss + 0.1, "val_accuracy": acc - 0.05})
    return h


def test_plot_history_draws_one_panel_per_quantity_with_both_curves(tmp_path):
    path = tmp_path / "curves.png"
    fig = viz.plot_history(fake_history(), path)
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "accuracy"]
    loss_ax = fig.axes[0]
    assert [line.get_label() for line in loss_ax.get_lines()] == ["training", "validation"]
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_xdata(), [1, 2, 3, 4])
    np.testing.assert_allclose(loss_ax.get_lines()[1].get_ydata(), [2.1, 1.2, 0.7, 0.5])
    check_png(fig, path)


def test_history_plot_and_a_plain_dict_give_the_same_panels(tmp_path):
    h = fake_history()
    fig = h.plot(path=tmp_path / "h.png")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    only_loss = viz.plot_history({"loss": [1.0, 0.5]})
    assert [ax.get_title() for ax in only_loss.axes] == ["loss"]
    assert not (tmp_path / "nothing.png").exists()


def test_plot_history_rejects_an_empty_history():
    with pytest.raises(ValueError, match="non-empty dict"):
        viz.plot_history(History())


def test_plot_filters_draws_every_filter_of_the_first_conv(tmp_path, model):
    path = tmp_path / "filters.png"
    fig = viz.plot_filters(model, path=path)
    assert len(fig.axes) == 6  # 6 filters of 3x3x1
    first = model.layers[0].params["kernel"][:, :, 0, 0]
    np.testing.assert_allclose(fig.axes[0].get_images()[0].get_array(), first)
    assert "6 filters of 3x3x1" in fig._suptitle.get_text()
    check_png(fig, path)


def test_plot_filters_by_name_and_index_shows_channels_as_rows(model):
    second = model.layers[2]
    by_name = viz.plot_filters(model, second.name)
    by_index = viz.plot_filters(model, 2)
    # 4 filters (columns) of 3x2 over 6 input channels (rows)
    assert len(by_name.axes) == len(by_index.axes) == 6 * 4
    # row c = input channel, column k = filter
    cell = {(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start): ax
            for ax in by_name.axes}
    np.testing.assert_allclose(cell[2, 1].get_images()[0].get_array(),
                               second.params["kernel"][:, :, 2, 1])
    assert cell[2, 0].get_ylabel() == "in 2"


def test_plot_filters_colour_filters_for_three_channels():
    model = cytorch.Sequential([L.Conv2D(5, 3)], input_shape=(8, 8, 3), seed=1)
    fig = viz.plot_filters(model)
    image = fig.axes[0].get_images()[0].get_array()
    assert image.shape == (3, 3, 3) and image.min() == 0 and image.max() == 1


def test_plot_filters_errors_name_the_layer(model):
    with pytest.raises(ValueError, match="MaxPooling2D .* has no \\(kh, kw, C, K\\) kernel"):
        viz.plot_filters(model, 1)
    with pytest.raises(IndexError, match="layer index 42 is out of range: .* 7 layers"):
        viz.plot_filters(model, 42)
    dense_only = cytorch.Sequential([L.Flatten(), L.Dense(3)], input_shape=(4, 4, 1))
    with pytest.raises(ValueError, match="no layer with a \\(kh, kw, C, K\\) kernel"):
        viz.plot_filters(dense_only)


def test_layer_outputs_match_the_model_output(model):
    x = np.random.default_rng(0).random((3, 12, 12, 1)).astype(np.float32)
    outputs = viz.layer_outputs(model, x)
    assert [layer for layer, _ in outputs] == model.layers
    assert [out.shape[1:] for _, out in outputs] == [layer.output_shape
                                                     for layer in model.layers]
    np.testing.assert_allclose(outputs[-1][1], model.predict(x), rtol=1e-6)


def test_plot_activations_one_row_per_image_layer(tmp_path, model):
    path = tmp_path / "activations.png"
    image = np.random.default_rng(1).random((12, 12, 1))
    fig = viz.plot_activations(model, image, path=path, max_maps=5)
    # input (1 map) + conv 6 -> 5 drawn + pool 5 + conv 4 + avg pool 4; dropout skipped
    assert len(fig.axes) == 1 + 5 + 5 + 4 + 4
    labels = [ax.get_ylabel().split("\n")[0] for ax in fig.axes if ax.get_ylabel()]
    names = [layer.name for layer in model.layers]
    assert labels == ["input", names[0], names[1], names[2], names[4]]
    relu_maps = viz.layer_outputs(model, image[None])[0][1][0]
    np.testing.assert_allclose(fig.axes[1].get_images()[0].get_array(), relu_maps[:, :, 0])
    check_png(fig, path)


def test_plot_activations_checks_its_input(model):
    with pytest.raises(ValueError,
                       match="one image \\(H, W, C\\) .* got shape \\(2, 12, 12, 1\\)"):
        viz.plot_activations(model, np.zeros((2, 12, 12, 1)))
    with pytest.raises(ValueError,
                       match="x must have shape \\(N, 12, 12, 1\\) .* got \\(1, 8, 8, 1\\)"):
        viz.plot_activations(model, np.zeros((8, 8, 1)))


def test_without_matplotlib_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match='pip install "cytorch-edu\\[plot\\]"'):
        viz.plot_history({"loss": [1.0]})
    with pytest.raises(ImportError, match="cytorch-edu\\[plot\\]"):
        fake_history().plot()
