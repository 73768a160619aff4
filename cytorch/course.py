"""Exercises of the course notebooks, checked with one call.

Each notebook in ``notebooks/`` ends with two or three exercises.  Work out the answer (by hand,
then with cytorch), put it in the cell and run it::

    >>> from cytorch import course
    >>> course.check("conv_output_volume", (64, 64, 10))
    conv_output_volume: correct. Padding 2 keeps a 5x5 filter from shrinking the 64x64 input; the depth is the number of filters.

A wrong answer raises ``course.WrongAnswer`` with a hint that points at the idea to revisit
(never the answer itself); an answer left as ``None`` prints the question and does not raise,
so a notebook runs from top to bottom before you have answered anything.
``course.exercises()`` lists every exercise with its question; worked solutions are in
``notebooks/solutions/``.
"""
import difflib
import numbers
from dataclasses import dataclass, field

import numpy as np

__all__ = ["check", "exercises", "question", "WrongAnswer", "Exercise"]


class WrongAnswer(AssertionError):
    """Raised by ``check`` for a wrong answer; the message is a hint, not the answer."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: its question, the expected answer, and what to say when it is wrong.

    ``kind`` is how answers are compared: ``"int"`` (an exact whole number), ``"number"``
    (within 1e-6 relative), ``"shape"`` (a tuple of ints, e.g. an output volume), ``"array"``
    (same shape, values within 1e-6), ``"set"`` (the same elements in any order) or ``"text"``
    (the same string, case and surrounding spaces ignored).  ``mistakes`` maps a frequent wrong
    answer to a hint that names the slip.
    """
    name: str
    notebook: str
    question: str
    expected: object
    kind: str
    hint: str
    explanation: str
    mistakes: tuple = field(default=())


_EXERCISES = {}


def _add(name, notebook, question, expected, kind, hint, explanation, mistakes=()):
    _EXERCISES[name] = Exercise(name, notebook, question, expected, kind, hint, explanation,
                                tuple(mistakes))


# -- 01 convolution by hand ---------------------------------------------------------------------
_add("conv_4x4", "01_convolution_by_hand",
     "Convolve the 4x4 image [[1,1,1,0],[0,1,1,1],[0,1,1,0],[1,1,0,0]] with the 3x3 kernel "
     "[[1,0,1],[0,1,0],[1,0,1]] (stride 1, no padding). Answer with the output as a list of "
     "rows.",
     [[4, 3], [3, 4]], "array",
     "slide the 3x3 window one cell at a time; each output cell is the sum of the 9 products "
     "window * kernel. A 4x4 input gives (4 - 3)/1 + 1 cells per axis.",
     "The four windows overlap the kernel's five 1s in 4, 3, 3 and 4 places.")
_add("edge_value", "01_convolution_by_hand",
     "In the 6x6 edge example (image from the slides, kernel [[1,0,-1],[2,0,-2],[1,0,-1]]), "
     "the first three outputs of row 0 are 2, -17 and -6. What is the fourth, output[0, 3]?",
     20, "int",
     "the fourth window covers columns 3 to 5 of rows 0 to 2; multiply each cell by the "
     "kernel value at the same place (left column +1, +2, +1; right column -1, -2, -1) and add.",
     "Column 3 holds 7, 7, 4 and column 5 holds 1, 1, 2: (7 + 14 + 4) - (1 + 2 + 2) = 20. A "
     "large positive value: the image gets darker from left to right there, an edge.",
     mistakes=[(-20, "the sign is flipped: deep learning's convolution does not flip the "
                     "kernel, the left column is +1, +2, +1")])
_add("patch_count", "01_convolution_by_hand",
     "How many 3x3 patches (positions of a 3x3 window, stride 1) does a 28x28 MNIST image "
     "have?",
     26 * 26, "int",
     "count the positions along one axis first: (N - F)/S + 1, then both axes together.",
     "(28 - 3 + 1) x (28 - 3 + 1) = 26 x 26 = 676: the output of a 3x3 convolution is 26x26.",
     mistakes=[(26, "that is one axis: the window also slides down"),
               (25 * 25, "(N - F) + 1, not (N - F): the window can start at position 0")])

# -- 02 output size and parameters --------------------------------------------------------------
_add("conv_output_volume", "02_output_size_and_parameters",
     "Input volume 64x64x3, 10 filters of 5x5, padding P = 2, stride S = 1. What is the output "
     "volume (H, W, depth)?",
     (64, 64, 10), "shape",
     "per spatial axis (N + 2P - F)/S + 1; the depth is the number of filters, not the input "
     "depth.",
     "Padding 2 keeps a 5x5 filter from shrinking the 64x64 input; the depth is the number of "
     "filters.",
     mistakes=[((60, 60, 10), "the padding adds 2P to N before subtracting F"),
               ((64, 64, 3), "the depth of the output is the number of filters")])
_add("conv_params", "02_output_size_and_parameters",
     "How many parameters (weights and biases) does that layer have: 10 filters of 5x5 on a "
     "64x64x3 input?",
     760, "int",
     "each filter extends through the full depth of the input (F x F x C weights) and has one "
     "bias. The input's width and height do not appear.",
     "(5*5*3 + 1) * 10 = 760, the same as on a 32x32x3 input: the weights are shared across "
     "positions.",
     mistakes=[(750, "each filter also has a bias"), (260, "each filter spans all 3 input "
                                                          "channels"),
               (250, "each filter spans all 3 input channels and has a bias")])
_add("strides_that_fit", "02_output_size_and_parameters",
     "A 5x5 filter on a 32x32 input without padding: which strides S from 1 to 6 fit exactly, "
     "that is make (N - F)/S + 1 a whole number? Answer with a set, e.g. {1, 2}.",
     {1, 3}, "set",
     "(32 - 5) = 27 must be divisible by S.",
     "27 = 3^3, so S = 1 (28x28 output) and S = 3 (10x10); S = 2 gives 14.5: it does not "
     "fit.")

# -- 03 pooling and weight sharing --------------------------------------------------------------
_add("pool_output", "03_pooling_and_weight_sharing",
     "A 26x26x6 volume goes through 2x2 max pooling with stride 2. What is the output volume?",
     (13, 13, 6), "shape",
     "(W - F)/S + 1 per spatial axis; pooling works on every depth slice on its own.",
     "(26 - 2)/2 + 1 = 13, and the 6 slices stay 6: pooling has no parameters and keeps the "
     "depth.",
     mistakes=[((13, 13, 1), "pooling keeps every depth slice"),
               ((25, 25, 6), "the stride is 2, not 1")])
_add("max_pool_by_hand", "03_pooling_and_weight_sharing",
     "Max-pool the 4x4 map [[1,3,2,1],[4,6,5,0],[3,1,1,8],[0,2,7,2]] with 2x2 windows and "
     "stride 2. Answer with the 2x2 output as a list of rows.",
     [[6, 5], [3, 8]], "array",
     "the four windows do not overlap: top-left, top-right, bottom-left, bottom-right 2x2 "
     "blocks; keep the largest number of each.",
     "max{1,3,4,6} = 6, max{2,1,5,0} = 5, max{3,1,0,2} = 3, max{1,8,7,2} = 8.",
     mistakes=[([[3.5, 2.0], [1.5, 4.5]], "that is average pooling: take the max")])
_add("locally_connected_params", "03_pooling_and_weight_sharing",
     "A 28x28x1 input, 5 neurons per position with 3x3 receptive fields, stride 1, no "
     "padding. Without weight sharing (a locally connected layer), how many parameters, "
     "biases included (one per output neuron)?",
     26 * 26 * 5 * (3 * 3 * 1 + 1), "int",
     "first the output volume; then every output neuron has its own 3x3x1 weights and its own "
     "bias.",
     "26 x 26 x 5 = 3,380 neurons, each with 9 weights + 1 bias: 33,800; a Conv2D shares them "
     "and has 5 x 10 = 50.",
     mistakes=[(50, "that is the shared (convolutional) count: every position has its own "
                    "weights here"),
               (26 * 26 * 5 * 9, "each output neuron also has its own bias")])

# -- 04 dropout and classic architectures -------------------------------------------------------
_add("lenet_c5_params", "04_dropout_and_architectures",
     "LeNet-5's third convolution has 120 filters of 5x5 on its 5x5x16 input. How many "
     "parameters does it have?",
     120 * (5 * 5 * 16 + 1), "int",
     "F x F x C weights per filter (C is the input depth), plus one bias per filter.",
     "120 x (5*5*16 + 1) = 48,120: most of LeNet-5's 61,706 parameters.",
     mistakes=[(120 * 5 * 5 * 16, "each filter also has a bias"),
               (120 * 26, "each filter spans all 16 input channels")])
_add("dropout_scale", "04_dropout_and_architectures",
     "Inverted dropout with rate 0.2 in training: an activation of 1.0 that is kept comes out "
     "as what value?",
     1.25, "number",
     "inverted dropout divides the kept activations by the keep probability 1 - rate, so "
     "that the expected value stays the same and inference needs no change.",
     "1.0 / (1 - 0.2) = 1.25; on average 0.8 x 1.25 + 0.2 x 0 = 1.0.",
     mistakes=[(0.8, "that is the keep probability: the kept value is divided by it"),
               (1.2, "divide by the keep probability, do not add the rate")])
_add("receptive_field_3x3", "04_dropout_and_architectures",
     "VGG stacks 3x3 convolutions (stride 1). How large is the receptive field, on the input, "
     "of one output of three stacked 3x3 convolutions?",
     7, "int",
     "each 3x3 layer adds 2 to the receptive field: 3, then 5, then ...",
     "3 + 2 + 2 = 7: three 3x3 layers see a 7x7 patch with 27C^2 weights instead of 49C^2, "
     "and three non-linearities instead of one.",
     mistakes=[(9, "the windows overlap: each layer adds F - 1 = 2, not 3")])

# -- 05 the Keras workflow ----------------------------------------------------------------------
_add("mnist_net_params_16", "05_keras_workflow",
     "Take the Keras MNIST net of the lecture (38,390 parameters) and give its first Conv2D 16 "
     "filters instead of 10. How many parameters does the net have now?",
     (5 * 5 * 1 + 1) * 16 + (5 * 5 * 16 + 1) * 20 + 320 * 100 + 100 + 1010, "int",
     "two layers change: the first conv (16 filters) and the second conv, whose filters now "
     "span 16 input channels. Build it and read summary(), or count per layer.",
     "416 + 8,020 + 32,100 + 1,010 = 41,546: the second conv's filters grow with the first "
     "conv's number of filters.",
     mistakes=[(38390 + 6 * 26, "the second conv's filters also grow: they span 16 input "
                                "channels now")])
_add("validation_samples", "05_keras_workflow",
     "fit(X, y, validation_split=0.1) on 1,437 training images: how many images does Keras "
     "(and cytorch) hold out for validation?",
     1437 - int(1437 * 0.9), "int",
     "Keras trains on the first floor(n * (1 - split)) samples and validates on the rest.",
     "floor(1437 x 0.9) = 1,293 train, 1437 - 1293 = 144 validate (the last 144 samples).",
     mistakes=[(143, "floor(n * split) is what some libraries hold out; Keras floors the "
                     "training part instead")])
_add("steps_per_epoch", "05_keras_workflow",
     "With 1,293 training images and batch_size=64, how many steps (weight updates) does one "
     "epoch take?",
     -(-1293 // 64), "int",
     "one step per batch; the last batch is smaller but still a step.",
     "ceil(1293 / 64) = 21: 20 full batches and one of 13.",
     mistakes=[(20, "the last, smaller batch is a step too")])

# -- 06 scikit-learn ----------------------------------------------------------------------------
_add("grid_search_fits", "06_cnnclassifier_in_scikit_learn",
     "GridSearchCV(CNNClassifier(), {'learning_rate': [1e-3, 1e-2, 1e-1], 'alpha': [1e-4, "
     "1e-3]}, cv=3) with the default refit=True: how many times is a CNNClassifier fitted in "
     "all?",
     3 * 2 * 3 + 1, "int",
     "every combination of the grid is fitted once per fold, and refit fits the best one "
     "once more on all the data.",
     "3 x 2 combinations x 3 folds = 18, plus 1 refit = 19.",
     mistakes=[(18, "refit=True fits the best combination once more, on all the data"),
               (6, "each combination is fitted once per fold")])
_add("auto_batch_size", "06_cnnclassifier_in_scikit_learn",
     "CNNClassifier(batch_size='auto') is fitted on 150 samples. What batch size does it use?",
     150, "int",
     "'auto' is min(200, n_samples), as in scikit-learn's MLPClassifier.",
     "min(200, 150) = 150: one batch per epoch.",
     mistakes=[(200, "'auto' is min(200, n_samples)")])

# -- 07 writing a layer plugin ------------------------------------------------------------------
_add("entry_point_group", "07_writing_a_layer_plugin",
     "Under which entry-point group does a distribution register its layers so that "
     "cytorch.layers.get finds them? (a string)",
     "cytorch.layers", "text",
     "look at [project.entry-points.\"...\"] in the template's pyproject.toml.",
     "\"cytorch.layers\": cytorch's own layers register there too.")
_add("scale_grad_gamma", "07_writing_a_layer_plugin",
     "For the Scale layer y = x * gamma (one gamma per channel), x = [[1, 2], [3, 4]] (N=2, "
     "C=2) and dL/dy = [[1, 1], [1, -1]]: what is dL/dgamma? (a list of 2 numbers)",
     [4, -2], "array",
     "dy/dgamma_c = x[:, c]; sum dout * x over every axis but the channel axis.",
     "gamma_0: 1*1 + 1*3 = 4; gamma_1: 1*2 + (-1)*4 = -2.",
     mistakes=[([1, -1], "multiply by x before summing over the batch")])

# -- 08 looking inside ----------------------------------------------------------------------------
_add("linear_saliency", "08_looking_inside",
     "For a linear score S = 2*x0 - 3*x1 + 0.5*x2, what is the saliency |dS/dx| of the three "
     "inputs? (a list of 3 numbers)",
     [2, 3, 0.5], "array",
     "the gradient of a linear function is its coefficients; saliency keeps the absolute "
     "value.",
     "dS/dx = (2, -3, 0.5), so |dS/dx| = (2, 3, 0.5): x1 matters most, whatever its value.",
     mistakes=[([2, -3, 0.5], "saliency is the absolute value of the gradient")])
_add("grad_cam_weights", "08_looking_inside",
     "Grad-CAM: the gradient of the class score with respect to one 2x2 channel of the last "
     "conv is [[0.1, 0.3], [0.2, 0.2]]. What is that channel's weight alpha_k?",
     0.2, "number",
     "alpha_k is the average of the gradient over the map's positions (global average "
     "pooling of the gradient).",
     "(0.1 + 0.3 + 0.2 + 0.2) / 4 = 0.2.",
     mistakes=[(0.8, "average the gradient over the 4 positions, do not just add")])


# -- checking -----------------------------------------------------------------------------------
def _get(name):
    try:
        return _EXERCISES[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), _EXERCISES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"no exercise named {name!r}{hint} Known: "
                       f"{', '.join(sorted(_EXERCISES))}") from None


def exercises(notebook=None):
    """``{name: question}`` for every exercise (of one notebook, e.g.
    ``"02_output_size_and_parameters"``, when given)."""
    return {e.name: e.question for e in _EXERCISES.values()
            if notebook is None or e.notebook == notebook}


def question(name):
    """The question of exercise ``name``."""
    return _get(name).question


def _same(kind, answer, expected):
    """Whether ``answer`` equals ``expected`` under ``kind``; a str says what form was
    expected when the answer does not even have it."""
    if kind in ("int", "number"):
        if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
            return "a number"
        if kind == "int" and float(answer) != int(answer):
            return "a whole number"
        return bool(np.isclose(float(answer), float(expected), rtol=1e-6, atol=1e-12))
    if kind == "shape":
        if not isinstance(answer, (tuple, list)) or not all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in answer):
            return f"a tuple of {len(expected)} ints such as (28, 28, 6)"
        return tuple(answer) == tuple(expected)
    if kind == "array":
        try:
            a = np.asarray(answer, dtype=float)
        except (TypeError, ValueError):
            return f"an array (a list of numbers) of shape {np.shape(expected)}"
        if a.shape != np.shape(expected):
            return f"an array of shape {np.shape(expected)}, not {a.shape}"
        return bool(np.allclose(a, expected, rtol=1e-6, atol=1e-9))
    if kind == "set":
        try:
            return set(answer) == set(expected)
        except TypeError:
            return "a set of numbers such as {1, 2}"
    if kind == "text":
        if not isinstance(answer, str):
            return "a string"
        return answer.strip().lower() == str(expected).lower()
    raise ValueError(f"unknown exercise kind {kind!r}")


def check(name, answer):
    """Check ``answer`` to exercise ``name``.

    Prints why a right answer is right; raises ``WrongAnswer`` with a hint for a wrong one;
    for ``None`` (not answered yet) prints the question.  Returns nothing, so a notebook cell
    shows only the message.  Unknown names raise KeyError with the closest known name.
    """
    exercise = _get(name)
    if answer is None:
        print(f"{name}: not answered yet. {exercise.question}")
        return
    verdict = _same(exercise.kind, answer, exercise.expected)
    if verdict is True:
        print(f"{name}: correct. {exercise.explanation}")
        return
    if isinstance(verdict, str):
        raise WrongAnswer(f"{name}: the answer should be {verdict}, got {answer!r}. "
                          f"Hint: {exercise.hint}")
    for wrong, why in exercise.mistakes:
        if _same(exercise.kind, answer, wrong) is True:
            raise WrongAnswer(f"{name}: not quite, {answer!r} is a classic slip: {why}.")
    raise WrongAnswer(f"{name}: {answer!r} is not it. Hint: {exercise.hint}")
