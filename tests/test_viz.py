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
    only_loss = viz.plot_history({"loss": [1.0, 0.5]}, show=False)
    assert [ax.get_title() for ax in only_loss.axes] == ["loss"]
    assert not (tmp_path / "nothing.png").exists()


def test_plot_history_rejects_an_empty_history():
    with pytest.raises(ValueError, match="non-empty dict"):
        viz.plot_history(History(), show=False)


def filter_axes(fig):
    """The filter pictures: every axes but the colour bar."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def colour_bar(fig):
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1, "one colour bar for all filters"
    return bars[0]


def test_plot_filters_draws_every_filter_of_the_first_conv(tmp_path, model):
    path = tmp_path / "filters.png"
    fig = viz.plot_filters(model, path=path)
    assert len(filter_axes(fig)) == 6  # 6 filters of 3x3x1
    first = model.layers[0].params["kernel"][:, :, 0, 0]
    np.testing.assert_allclose(filter_axes(fig)[0].get_images()[0].get_array(), first)
    assert "6 filters of 3x3x1" in fig._suptitle.get_text()
    check_png(fig, path)


def test_plot_filters_has_a_colour_bar_centred_on_zero(model):
    fig = viz.plot_filters(model, show=False)
    kernel = model.layers[0].params["kernel"]
    m = np.abs(kernel).max()
    assert colour_bar(fig).get_ylabel() == "weight (mid grey = 0)"
    assert np.allclose(colour_bar(fig).get_ylim(), (-m, m))
    for ax in filter_axes(fig):  # one shared scale, symmetric: 0 maps to mid grey
        assert np.allclose(ax.get_images()[0].get_clim(), (-m, m))


def test_plot_filters_fits_a_slide_and_says_when_it_shows_a_subset():
    wide = cytorch.Sequential([L.Conv2D(4, 3), L.Conv2D(120, 3)], input_shape=(9, 9, 1), seed=0)
    fig = viz.plot_filters(wide, 1, max_filters=12, show=False)
    width, height = fig.get_size_inches()
    assert width * fig.dpi < 1001 and height * fig.dpi < 751  # 10 x 7.5 inches: a slide
    assert len(filter_axes(fig)) == 4 * 12  # 4 input channels (rows) x 12 filters
    assert "12 of 120 filters of 3x3x4" in fig._suptitle.get_text()


def test_plot_filters_by_name_and_index_shows_channels_as_rows(model):
    second = model.layers[2]
    by_name = viz.plot_filters(model, second.name, show=False)
    by_index = viz.plot_filters(model, 2, show=False)
    # 4 filters (columns) of 3x2 over 6 input channels (rows)
    assert len(filter_axes(by_name)) == len(filter_axes(by_index)) == 6 * 4
    # row c = input channel, column k = filter
    cell = {(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start): ax
            for ax in filter_axes(by_name)}
    np.testing.assert_allclose(cell[2, 1].get_images()[0].get_array(),
                               second.params["kernel"][:, :, 2, 1])
    assert cell[2, 0].get_ylabel() == "in 2"


def test_plot_filters_colour_filters_for_three_channels():
    model = cytorch.Sequential([L.Conv2D(5, 3)], input_shape=(8, 8, 3), seed=1)
    fig = viz.plot_filters(model, show=False)
    kernel = model.layers[0].params["kernel"]
    image = filter_axes(fig)[0].get_images()[0].get_array()
    # the shared symmetric scale: weight w -> 0.5 + 0.5 w / max|w|, so 0 is grey
    np.testing.assert_allclose(image, 0.5 + 0.5 * kernel[..., 0] / np.abs(kernel).max(),
                               rtol=1e-5)
    assert colour_bar(fig).get_ylabel() == "weight (mid grey = 0)"


def test_plot_filters_errors_name_the_layer(model):
    with pytest.raises(ValueError, match="MaxPooling2D .* has no \\(kh, kw, C, K\\) kernel"):
        viz.plot_filters(model, 1, show=False)
    with pytest.raises(IndexError, match="layer index 42 is out of range: .* 7 layers"):
        viz.plot_filters(model, 42, show=False)
    dense_only = cytorch.Sequential([L.Flatten(), L.Dense(3)], input_shape=(4, 4, 1))
    with pytest.raises(ValueError, match="no layer with a \\(kh, kw, C, K\\) kernel"):
        viz.plot_filters(dense_only, show=False)


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
        viz.plot_activations(model, np.zeros((2, 12, 12, 1)), show=False)
    with pytest.raises(ValueError,
                       match="x must have shape \\(N, 12, 12, 1\\) .* got \\(1, 8, 8, 1\\)"):
        viz.plot_activations(model, np.zeros((8, 8, 1)), show=False)


def test_without_matplotlib_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match='pip install "cytorch-edu\\[plot\\]"'):
        viz.plot_history({"loss": [1.0]}, show=False)
    with pytest.raises(ImportError, match="cytorch-edu\\[plot\\]"):
        fake_history().plot(show=False)


# -- the new pictures ---------------------------------------------------------------------------
def test_plot_activations_titles_true_and_predicted_labels_and_numbers_channels(model):
    image = np.random.default_rng(1).random((12, 12, 1))
    fig = viz.plot_activations(model, image, max_maps=4, label=7, show=False)
    predicted = int(model.predict(image[None]).argmax())
    assert fig._suptitle.get_text() == f"true 7, predicted {predicted}"
    first_conv_row = [ax for ax in fig.axes if ax.get_subplotspec().rowspan.start == 1]
    assert [ax.get_title() for ax in first_conv_row] == ["ch 0", "ch 1", "ch 2", "ch 3"]
    assert "4 of 6 channels" in first_conv_row[0].get_ylabel()
    input_row = [ax for ax in fig.axes if ax.get_subplotspec().rowspan.start == 0]
    assert "of" not in input_row[0].get_ylabel()  # 1 channel of 1: nothing left out
    width, height = fig.get_size_inches()
    assert width * fig.dpi < 1001 and height * fig.dpi < 751  # 10 x 7.5 inches: a slide


def test_plot_confusion_matrix_counts_and_accuracy(tmp_path):
    y_true = np.array([0, 0, 1, 1, 2, 2, 2])
    probabilities = np.eye(3)[[0, 1, 1, 1, 2, 0, 2]]  # two mistakes: 0->1 and 2->0
    path = tmp_path / "cm.png"
    fig = viz.plot_confusion_matrix(y_true, probabilities, path=path)
    ax = fig.axes[0]
    assert ax.get_title() == "accuracy 0.714 on 7 samples"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted label", "true label")
    counts = np.array(ax.get_images()[0].get_array())
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    assert len(fig.axes) == 2  # the matrix and its colour bar
    check_png(fig, path)
    normalized = viz.plot_confusion_matrix(y_true, probabilities.argmax(1), normalize="true",
                                           show=False)
    np.testing.assert_allclose(normalized.axes[0].get_images()[0].get_array()[2],
                               [1 / 3, 0, 2 / 3])
    with pytest.raises(ValueError, match="same length, got 7 and 2"):
        viz.plot_confusion_matrix(y_true, [0, 1], show=False)


def test_plot_misclassified_shows_only_the_mistakes_with_both_labels():
    images = np.random.default_rng(0).random((6, 8, 8, 1))
    y_true = np.array([3, 1, 4, 1, 5, 9])
    probabilities = np.full((6, 10), 0.02)
    probabilities[np.arange(6), [3, 7, 4, 1, 6, 9]] = 0.82
    fig = viz.plot_misclassified(images, y_true, probabilities, show=False)
    assert [ax.get_title() for ax in fig.axes] == ["true 1\npred 7 (0.82)",
                                                   "true 5\npred 6 (0.82)"]
    np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), images[1, :, :, 0])
    assert fig._suptitle.get_text() == "2 of 6 misclassified"
    few = viz.plot_misclassified(images, y_true, probabilities.argmax(1), max_images=1,
                                 show=False)
    assert [ax.get_title() for ax in few.axes] == ["true 1\npred 7"]
    assert few._suptitle.get_text() == "2 of 6 misclassified (first 1 shown)"


def test_plot_saliency_and_grad_cam_draw_the_maps_of_explain(model):
    x = np.random.default_rng(4).random((3, 12, 12, 1)).astype(np.float32)
    predicted = model.predict(x).argmax(1)
    fig = viz.plot_saliency(model, x, labels=[1, 2, 3], show=False)
    assert len(fig.axes) == 6  # images on top, maps below
    tops, maps = fig.axes[0::2], fig.axes[1::2]  # drawn column by column
    assert [ax.get_title() for ax in tops] == [f"true {t}, pred {p}" for t, p in
                                               zip([1, 2, 3], predicted)]
    assert [ax.get_title() for ax in maps] == [f"class {p}" for p in predicted]
    np.testing.assert_allclose(maps[0].get_images()[1].get_array(),
                               cytorch.explain.saliency(model, x)[0])
    cam = viz.plot_grad_cam(model, x[0], class_index=5, show=False)
    conv = model.layers[2]
    assert cam._suptitle.get_text() == f"Grad-CAM on '{conv.name}'"
    assert [ax.get_title() for ax in cam.axes] == [f"pred {predicted[0]}", "class 5"]
    np.testing.assert_allclose(cam.axes[1].get_images()[1].get_array(),
                               cytorch.explain.grad_cam(model, x[:1], 5)[0])


def test_convolution_steps_draw_the_course_example(tmp_path):
    image = [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0],
             [0, 1, 1, 0, 0]]
    kernel = [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    assert viz.convolve_by_hand(image, kernel).tolist() == [[4, 3, 4], [2, 4, 3], [2, 3, 4]]
    path = tmp_path / "steps.png"
    fig = viz.plot_convolution_steps(image, kernel, path=path)
    assert len(fig.axes) == 3 * 4  # steps 1, 2 and 9; image, kernel, products, output
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:4] == ["step 1: window at (0, 0)", "kernel", "products, sum = 4",
                          "output[0, 0] = 4"]
    assert titles[6:8] == ["products, sum = 3", "output[0, 1] = 3"]
    assert titles[8] == "step 9: window at (2, 2)"
    products = [t.get_text() for t in fig.axes[2].texts]
    assert products == ["1", "0", "1", "0", "1", "0", "0", "0", "1"]
    last_output = [t.get_text() for t in fig.axes[11].texts]
    assert last_output == ["4", "3", "4", "2", "4", "3", "2", "3", "4"]  # complete
    assert [t.get_text() for t in fig.axes[3].texts] == ["4"]  # only (0, 0) so far
    assert fig._suptitle.get_text() == "5x5 image * 3x3 kernel, stride 1 -> 3x3 output"
    check_png(fig, path)
    edge = viz.convolve_by_hand(np.array([[5, 1, 7, 7, 8, 1], [7, 2, 5, 7, 8, 1],
                                          [5, 3, 5, 4, 4, 2], [4, 4, 3, 3, 2, 1],
                                          [3, 3, 4, 7, 8, 1], [5, 7, 8, 2, 3, 1]]),
                                [[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    assert edge[0, :3].tolist() == [2, -17, -6]  # the slides' first three positions
    strided = viz.plot_convolution_steps(np.arange(49).reshape(7, 7), np.ones((3, 3)),
                                         stride=2, steps=[(2, 2)], show=False)
    assert strided.axes[0].get_title() == "step 9: window at (4, 4)"


def test_script_without_a_display_says_where_the_png_went(capsys):
    # the tests run with MPLBACKEND=Agg (tests/conftest.py): no window can open
    fig = viz.plot_history({"loss": [1.0, 0.5]})
    message = capsys.readouterr().err
    assert "no display to show the history on (matplotlib backend 'agg')" in message.lower()
    saved = message.split("wrote it to ")[1].split(" (pass path=")[0]
    check_png(fig, saved)
    import os
    os.remove(saved)
    viz.plot_history({"loss": [1.0, 0.5]}, show=False)
    assert capsys.readouterr().err == ""
    with pytest.raises(TypeError, match="show must be True, False or None .* got 'yes'"):
        viz.plot_history({"loss": [1.0, 0.5]}, show="yes")


def test_script_with_a_display_shows_a_window(monkeypatch, tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    from cytorch.viz import _figure
    shown = []
    monkeypatch.setattr(_figure, "_interactive", lambda backend: True)  # as with a GUI backend
    monkeypatch.setattr(plt, "show", lambda block=None: shown.append(block))
    fig = viz.plot_history({"loss": [1.0, 0.5]})
    try:
        assert fig.number in plt.get_fignums()  # a pyplot figure: the backend opens its window
        assert shown == [True]                  # a script waits until the window is closed
    finally:
        plt.close(fig)
    saved = viz.plot_history({"loss": [1.0, 0.5]}, path=tmp_path / "h.png")
    assert shown == [True] and getattr(saved.canvas, "manager", None) is None  # path: file only
    forced = viz.plot_history({"loss": [1.0, 0.5]}, path=tmp_path / "h2.png", show=True)
    plt.close(forced)
    assert shown == [True, True] and (tmp_path / "h2.png").exists()
