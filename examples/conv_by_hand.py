"""
Convolution and pooling by hand
===============================

The course's worked examples, each computed three ways and checked against each other.

1. explicit Python loops, written here in a few lines, the way you would on paper;
2. the NumPy twin in ``cytorch.reference`` (im2col + one matrix product);
3. the compiled Cython kernel behind ``cytorch.functional``.

Then output-size arithmetic (a 7x7 input, a 3x3 filter, strides 1, 2 and 3, padding that keeps
the size), parameter counts (760; 280 and 910; AlexNet's 34,944) and max / average / min
pooling of one 4x4 map.

Run it::

    python examples/conv_by_hand.py
"""
import numpy as np

import cytorch
from cytorch import functional as F
from cytorch import layers as L
from cytorch import reference as R


def conv_loops(image, kernel, stride=1):
    """One channel, one filter, no padding: out[i, j] = sum(window * kernel)."""
    H, W = image.shape
    kh, kw = kernel.shape
    H_out, W_out = (H - kh) // stride + 1, (W - kw) // stride + 1
    out = np.zeros((H_out, W_out))
    for i in range(H_out):
        for j in range(W_out):
            window = image[i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[i, j] = np.sum(window * kernel)
    return out


def pool_loops(image, reduce, size=2):
    """One channel, size x size windows at stride size: out[i, j] = reduce(window)."""
    H_out, W_out = image.shape[0] // size, image.shape[1] // size
    out = np.zeros((H_out, W_out))
    for i in range(H_out):
        for j in range(W_out):
            out[i, j] = reduce(image[i * size:(i + 1) * size, j * size:(j + 1) * size])
    return out


def as_batch(image):
    """(H, W) -> (1, H, W, 1): one image, one channel, channels-last."""
    return np.asarray(image, dtype=np.float64)[None, :, :, None]


def as_filter(kernel):
    """(kh, kw) -> (kh, kw, 1, 1): one input channel, one filter."""
    return np.asarray(kernel, dtype=np.float64)[:, :, None, None]


def three_ways(title, image, kernel):
    image, kernel = np.asarray(image, float), np.asarray(kernel, float)
    by_loops = conv_loops(image, kernel)
    by_twin, _ = R.conv2d_forward(as_batch(image), as_filter(kernel))
    with cytorch.backend("compiled"):
        by_kernel, _ = F.conv2d_forward(as_batch(image), as_filter(kernel))
    assert np.array_equal(by_loops, by_twin[0, :, :, 0]), "the NumPy twin disagrees"
    assert np.array_equal(by_loops, by_kernel[0, :, :, 0]), "the compiled kernel disagrees"
    print(f"== {title}")
    print(f"image {image.shape[0]}x{image.shape[1]}:\n{show(image)}")
    print(f"filter {kernel.shape[0]}x{kernel.shape[1]}:\n{show(kernel)}")
    print(f"output {by_loops.shape[0]}x{by_loops.shape[1]} "
          f"(loops == NumPy twin == compiled kernel):\n{show(by_loops)}\n")
    return by_loops


def show(a):
    return "\n".join("  " + " ".join(f"{v:4g}" for v in row) for row in a)


def section_convolutions():
    # The 5x5 binary image and the "X" filter: every output is the count of 1s under the X.
    image = [[1, 1, 1, 0, 0],
             [0, 1, 1, 1, 0],
             [0, 0, 1, 1, 1],
             [0, 0, 1, 1, 0],
             [0, 1, 1, 0, 0]]
    x_filter = [[1, 0, 1],
                [0, 1, 0],
                [1, 0, 1]]
    out = three_ways("5x5 image, 3x3 'X' filter, stride 1", image, x_filter)
    assert out.tolist() == [[4, 3, 4], [2, 4, 3], [2, 3, 4]]

    # The 6x6 image and the vertical-edge (Sobel) filter: left column minus right column,
    # so it responds where intensity changes from left to right.
    image = [[5, 1, 7, 7, 8, 1],
             [7, 2, 5, 7, 8, 1],
             [5, 3, 5, 4, 4, 2],
             [4, 4, 3, 3, 2, 1],
             [3, 3, 4, 7, 8, 1],
             [5, 7, 8, 2, 3, 1]]
    sobel = [[1, 0, -1],
             [2, 0, -2],
             [1, 0, -1]]
    out = three_ways("6x6 image, 3x3 vertical-edge filter", image, sobel)
    first = ("5*1 + 1*0 + 7*(-1) + 7*2 + 2*0 + 5*(-2) + 5*1 + 3*0 + 5*(-1)")
    print(f"top-left output, by hand: {first} = {eval(first)}; "
          f"one step right: {out[0, 1]:g}\n")
    assert out[0, 0] == 2 and out[0, 1] == -17


def section_output_size():
    print("== Output size: floor((N + 2P - F) / S) + 1")
    x = np.arange(49.0).reshape(1, 7, 7, 1)
    w = np.ones((3, 3, 1, 1))
    for stride in (1, 2, 3):
        out, _ = F.conv2d_forward(x, w, strides=stride)
        exact = (7 - 3) / stride + 1
        line = (f"7x7 input, 3x3 filter, stride {stride}: (7 - 3)/{stride} + 1 = {exact:.4g}"
                f" -> output {out.shape[1]}x{out.shape[2]}")
        # the last window starts at row (out - 1) * stride and covers 3 rows: the rest of the
        # 7 rows is never seen
        missed = 7 - ((out.shape[1] - 1) * stride + 3)
        if missed:
            line += (f"; {exact:.4g} is not a whole number: the stride does not fit, the last "
                     f"{missed} row(s) and column(s) are never seen")
        print(line)
    print("summary() of that stride-3 layer says so:")
    model = cytorch.Sequential([L.Conv2D(1, 3, strides=3)], input_shape=(7, 7, 1))
    text = model.summary(print_fn=None)
    print("  " + "\n  ".join(text[text.index("WARNING"):].splitlines()))
    out, _ = F.conv2d_forward(x, w, padding=1)
    print(f"padding P = (F - 1)/2 = 1 keeps the size: (7 + 2*1 - 3)/1 + 1 = "
          f"{(7 + 2 * 1 - 3) // 1 + 1} -> output {out.shape[1]}x{out.shape[2]} "
          f"(padding='same' does the same)")
    try:
        F.conv2d_forward(np.ones((1, 2, 2, 1)), w)
    except cytorch.ShapeError as exc:
        print(f"a 3x3 filter on a 2x2 input does not fit at all:\n  ShapeError: {exc}")
    print()


def section_parameters():
    print("== Parameters: each filter has F*F*C weights + 1 bias")
    model = cytorch.Sequential([L.Conv2D(10, 5, padding=2)], input_shape=(32, 32, 3))
    print(f"32x32x3, 10 filters 5x5, pad 2: (5*5*3 + 1) * 10 = {(5 * 5 * 3 + 1) * 10}; "
          f"Conv2D says {model.count_params()}; output {model.output_shape}")
    assert model.count_params() == 760
    model = cytorch.Sequential([L.Conv2D(10, 3, padding=1, activation="relu"),
                                L.Conv2D(10, 3, padding=1, activation="relu")],
                               input_shape=(32, 32, 3))
    first, second = (layer.count_params() for layer in model.layers)
    print(f"two stacked 10x 3x3 convs on 32x32x3: (3*3*3)*10 + 10 = {first}, "
          f"then (3*3*10)*10 + 10 = {second}")
    assert (first, second) == (280, 910)
    # AlexNet's first layer: 96 filters of 11x11x3, stride 4, on 227x227x3 -> 55x55x96.
    model = cytorch.Sequential([L.Conv2D(96, 11, strides=4)], input_shape=(227, 227, 3))
    shared = model.count_params()
    unshared = 55 * 55 * 96 * (11 * 11 * 3 + 1)
    print(f"AlexNet conv1, 96 filters 11x11x3 stride 4 on 227x227x3 -> {model.output_shape}: "
          f"96*11*11*3 + 96 = {shared:,} parameters shared across positions; without sharing "
          f"(one filter per position) 55*55*96 * 364 = {unshared:,}")
    assert shared == 34_944
    print()


def section_pooling():
    print("== Pooling one 4x4 map with 2x2 windows, stride 2")
    fmap = np.array([[1, 1, 2, 4],
                     [5, 6, 7, 8],
                     [3, 2, 1, 0],
                     [1, 2, 3, 4]], dtype=float)
    print(f"map:\n{show(fmap)}")
    for kind, reduce in (("max", np.max), ("avg", np.mean), ("min", np.min)):
        by_loops = pool_loops(fmap, reduce)
        by_twin, _ = getattr(R, f"{kind}_pool2d_forward")(as_batch(fmap), 2)
        with cytorch.backend("compiled"):
            by_kernel, _ = getattr(F, f"{kind}_pool2d_forward")(as_batch(fmap), 2)
        assert np.array_equal(by_loops, by_twin[0, :, :, 0]), f"{kind}: twin disagrees"
        assert np.array_equal(by_loops, by_kernel[0, :, :, 0]), f"{kind}: kernel disagrees"
        print(f"{kind} pooling (loops == NumPy twin == compiled kernel):\n{show(by_loops)}")


def main():
    np.set_printoptions(suppress=True)
    section_convolutions()
    section_output_size()
    section_parameters()
    section_pooling()


if __name__ == "__main__":
    main()
