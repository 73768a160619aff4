"""The ``cytorch`` command: train LeNet on the built-in digits, list layers, show the build.

::

    cytorch train [--model lenet5|keras_mnist|auto] [--size 8|16|28|32] [--epochs N]
                  [--batch-size N] [--learning-rate LR] [--seed N] [--save PATH]
                  [--backend compiled|reference] [--plot DIR] [--quiet]
    cytorch layers                       # every discovered layer: distribution, version, onnx
    cytorch summary MODEL [--input-shape H W C]     # a preset, auto, or a saved .npz
    cytorch export MODEL.npz OUTPUT.onnx [--opset N] [--fold-batchnorm]  # as ONNX
    cytorch info                         # compiled modules, BLAS, threads, OpenMP
    cytorch new-plugin NAME [--class-name CLASS] [--directory DIR]
                                         # a ready layer-plugin distribution, from the template

``python -m cytorch ...`` does the same.  A user mistake (unknown model, a shape that does not
fit, a bad option) prints one line on stderr and exits with status 2, without a traceback.
"""
import argparse
import math
import os
import sys
import time
import warnings

__all__ = ["main"]

PROG = "cytorch"
MODELS = ("lenet5", "keras_mnist", "auto")
SIZES = (8, 16, 28, 32)
#: the image side each preset was designed for (``auto`` adapts to any size)
DEFAULT_SIZE = {"lenet5": 32, "keras_mnist": 28, "auto": 16}
#: Adam's step size is multiplied by this after every epoch: big steps while the weights are
#: far from good, smaller ones to settle in the last epochs
LR_DECAY = 0.75


class UsageError(Exception):
    """A user mistake: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line (plus a pointer to --help), not a usage
    block: the same shape as every other user mistake."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _seed(text):
    """A seed every generator of ``cytorch train`` takes (scikit-learn's split: < 2**32)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**32 - 1, got "
                                         f"{value}")
    return value


def build_parser():
    """The argument parser of the ``cytorch`` command (one subparser per subcommand)."""
    parser = _Parser(prog=PROG, description="cytorch: learn how convolutional networks "
                                             "really work, then use them from scikit-learn.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = sub.add_parser(
        "train", help="train a CNN on the built-in handwritten digits",
        description="Train a CNN on scikit-learn's 1,797 handwritten digits (nothing is "
                    "downloaded): a stratified 80/20 train/test split, the model summary, a "
                    "progress bar per epoch and the final test accuracy.")
    train.add_argument("--model", default="lenet5", choices=MODELS,
                       help="network: LeNet-5 (61,706 params), the course's Keras MNIST net "
                            "(38,390), or CNNClassifier's 'auto' net (default: %(default)s)")
    train.add_argument("--size", type=int, choices=SIZES, default=None,
                       help="image side the digits are resampled to (default: 32 for lenet5, "
                            "28 for keras_mnist, 16 for auto)")
    train.add_argument("--epochs", type=_positive_int, default=8, metavar="N",
                       help="passes over the training set (default: %(default)s)")
    train.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                       help="samples per gradient step (default: %(default)s)")
    train.add_argument("--learning-rate", type=_positive_float, default=3e-3, metavar="LR",
                       help=f"Adam's initial step size, multiplied by {LR_DECAY} after every "
                            f"epoch (default: %(default)s)")
    train.add_argument("--seed", type=_seed, default=0, metavar="N",
                       help="seeds the split, the weights and the shuffling (default: "
                            "%(default)s): same seed, same result")
    train.add_argument("--save", metavar="PATH",
                       help="write the trained model to PATH (.npz; cytorch.load_model reads it)")
    train.add_argument("--backend", choices=("compiled", "reference"), default="compiled",
                       help="run the compiled kernels or their NumPy twins, to see what the "
                            "Cython buys (default: %(default)s)")
    train.add_argument("--plot", metavar="DIR",
                       help="write the learning curves, the first convolution's filters and "
                            "the test set's confusion matrix as PNG files into DIR (created if "
                            "needed; needs matplotlib: pip install \"cytorch-edu[plot]\")")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=cmd_train)

    layers = sub.add_parser("layers", help="list every layer found in the 'cytorch.layers' "
                                           "entry-point group",
                            description="List every layer registered in the 'cytorch.layers' "
                                        "entry-point group (built-ins and plugins), with its "
                                        "distribution, its version and whether an ONNX "
                                        "converter is registered for it in the 'cytorch.onnx' "
                                        "group (yes, no, failed to load, or conflict), and "
                                        "plugins that failed to load with their error.")
    layers.set_defaults(run=cmd_layers)

    summary = sub.add_parser("summary", help="print the layer table of a preset or saved model",
                             description="Print the summary table (output shapes, parameters, "
                                         "multiply-adds) of a preset network or a saved model.")
    summary.add_argument("model", metavar="MODEL",
                         help="a preset (lenet5, keras_mnist, alexnet_small, vgg_small), "
                              "CNNClassifier's 'auto' net (as "
                              "'cytorch train --model auto' builds it: 16x16x1 unless "
                              "--input-shape says otherwise), or the path of a saved .npz "
                              "model")
    summary.add_argument("--input-shape", nargs=3, type=_positive_int, metavar=("H", "W", "C"),
                         help="build the preset for this input shape instead of its own")
    summary.set_defaults(run=cmd_summary)

    export = sub.add_parser(
        "export", help="write a saved model as an ONNX file (onnxruntime, Netron)",
        description="Write a model saved with model.save (.npz) as a standard ONNX file that "
                    "onnxruntime runs with the same predictions and Netron draws.  Its input "
                    "'input' is a float32 batch (batch, H, W, C), channels-last as cytorch "
                    "takes it; its output 'output' is what model.predict returns.  Needs the "
                    "onnx package: pip install \"cytorch-edu[onnx]\".")
    export.add_argument("model", metavar="MODEL", help="the saved model (.npz)")
    export.add_argument("output", metavar="OUTPUT",
                        help="the ONNX file to write (.onnx); written beside and renamed into "
                             "place, so a failed export leaves nothing behind")
    export.add_argument("--opset", type=_positive_int, default=None, metavar="N",
                        help="ONNX operator set (default: 17; from 13 to the newest the "
                             "installed onnx knows)")
    export.add_argument("--fold-batchnorm", action="store_true",
                        help="fold each BatchNormalization that follows a Conv2D or Dense "
                             "without activation into its weights (outputs then differ from "
                             "cytorch's by float32 rounding)")
    export.set_defaults(run=cmd_export)

    info = sub.add_parser("info", help="show the build: compiled modules, BLAS, threads, OpenMP",
                          description="Show which compiled kernel modules are loaded and from "
                                      "where, the BLAS, the thread counts and OpenMP.")
    info.set_defaults(run=cmd_info)

    new_plugin = sub.add_parser(
        "new-plugin", help="write a ready layer-plugin distribution from the template",
        description="Write the folder of a new layer plugin (pyproject.toml with its "
                    "cytorch.layers entry point, the package, tests, conftest, README), every "
                    "name derived from NAME: 'gain' gives the distribution cytorch-gain, the "
                    "package cytorch_gain, the entry point gain and the class Gain.  Its tests "
                    "pass as written, before and after 'pip install -e .'.")
    new_plugin.add_argument("name", metavar="NAME",
                            help="the layer's name: lowercase words joined by '-' or '_', "
                                 "e.g. gain or my-gain (a leading 'cytorch-' is optional)")
    new_plugin.add_argument("--class-name", metavar="CLASS",
                            help="the layer class (default: NAME in CamelCase, e.g. MyGain)")
    new_plugin.add_argument("--directory", default=".", metavar="DIR",
                            help="where to create the plugin's folder (default: the current "
                                 "directory)")
    new_plugin.set_defaults(run=cmd_new_plugin)
    return parser


def _version():
    from . import __version__
    return __version__


# -- train --------------------------------------------------------------------------------------
def _make_model(name, input_shape, seed):
    """An uncompiled Sequential for the ``--model`` choice, built for ``input_shape``."""
    from . import models
    from .graph import Sequential
    if name == "auto":
        from .estimator import auto_spec
        spec = auto_spec(input_shape) + [("dense", {"units": 10, "activation": "softmax"})]
        return Sequential.from_spec(spec, input_shape=input_shape, seed=seed, name="auto")
    return models.get(name)(input_shape=input_shape, seed=seed)


def cmd_train(args, out):
    from sklearn.model_selection import train_test_split

    import cytorch
    from .datasets import load_digits

    size = args.size or DEFAULT_SIZE[args.model]
    if args.save:
        _check_writable(args.save)  # before training, not a minute later
    if args.plot:
        _check_plot_folder(args.plot)
    cytorch.set_seed(args.seed)
    model = _user_step(lambda: _make_model(args.model, (size, size, 1), args.seed))
    X, y = load_digits(size=size)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=args.seed)
    print(f"Digits: {len(X_train)} training and {len(X_test)} test images of {size}x{size}x1 "
          f"(stratified 80/20 split, seed {args.seed})", file=out)
    model.summary(print_fn=lambda text: print(text, file=out))
    out.flush()
    optimizer = cytorch.optimizers.Adam(learning_rate=args.learning_rate)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    decay = cytorch.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(
        optimizer, "learning_rate", optimizer.learning_rate * LR_DECAY))
    with cytorch.backend(args.backend):
        start = time.perf_counter()
        history = model.fit(X_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                            verbose=0 if args.quiet else 1, callbacks=[decay], seed=args.seed)
        seconds = time.perf_counter() - start
        loss, accuracy = model.evaluate(X_test, y_test)
    correct = round(accuracy * len(y_test))
    # the thread count is the compiled kernels' (OpenMP); the NumPy twins do not use it
    kernels = (f"compiled kernels, {cytorch.get_num_threads()} thread(s)"
               if args.backend == "compiled" else "reference kernels: the NumPy twins")
    print(f"Trained {args.epochs} epoch(s) in {seconds:.1f}s ({kernels})", file=out)
    print(f"Test loss: {loss:.4f}", file=out)
    print(f"Test accuracy: {accuracy:.4f} ({correct}/{len(y_test)} digits)",
          file=out)
    if args.save:
        _user_step(lambda: model.save(args.save))
        print(f"Saved to {args.save} (cytorch.load_model reads it back)", file=out)
    if args.plot:
        _plot(args.plot, model, history, X_test, y_test, out)
    return 0


def _check_plot_folder(folder):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError('--plot needs matplotlib, which is not installed: '
                         'pip install "cytorch-edu[plot]"') from None
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"--plot {folder}: is a file; give a folder for the PNG files")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--plot {folder}: cannot create the folder ({exc.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--plot {folder}: the folder is not writable")


def _plot(folder, model, history, X_test, y_test, out):
    """The pictures of ``--plot``, through ``cytorch.viz`` (never a window: files only)."""
    from . import viz
    pictures = {
        "curves.png": lambda path: viz.plot_history(history, path=path, show=False),
        "filters.png": lambda path: viz.plot_filters(model, path=path, show=False),
        "confusion_matrix.png": lambda path: viz.plot_confusion_matrix(
            y_test, model.predict(X_test), path=path, show=False),
    }
    for name, draw in pictures.items():
        path = os.path.join(folder, name)
        _user_step(lambda: draw(path))
        print(f"Wrote {path}", file=out)

def _check_writable(path):
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"--save {path}: is a directory; give a file name such as "
                         f"{os.path.join(path, 'model.npz')}")
    if not os.path.isdir(folder):
        raise UsageError(f"--save {path}: the directory {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--save {path}: the directory {folder} is not writable")


# -- layers -------------------------------------------------------------------------------------
def cmd_layers(args, out):
    from . import registry
    with warnings.catch_warnings():
        # a broken plugin is listed below with its error: no need to warn about it as well
        warnings.simplefilter("ignore", registry.PluginWarning)
        entries = registry.discover()
        converters = _onnx_converters()
    loaded = [e for e in entries if e.cls is not None]
    failed = [e for e in entries if e.cls is None]
    rows = [(e.name, e.cls.__name__, e.distribution, e.version or "?",
             converters.get(e.name, "no"),
             f"  (also claimed by {', '.join(e.conflict)})" if e.conflict else "")
            for e in loaded]
    header = ("name", "class", "distribution", "version", "onnx", "")
    widths = [max(len(r[k]) for r in rows + [header]) for k in range(5)]
    print(f"{len(loaded)} layer(s) in entry-point group {registry.GROUP!r}:", file=out)
    for row in [header] + rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
              + row[5], file=out)
    print("onnx: 'yes' if the 'cytorch.onnx' group has the layer's converter "
          "(cytorch.export.to_onnx)", file=out)
    if failed:
        print(f"\n{len(failed)} plugin(s) failed to load:", file=out)
        for e in failed:
            print(f"  {e.label} {e.version or ''} ({e.value}): {e.error}", file=out)
    return 0


def _onnx_converters():
    """``{layer name: "yes" | "failed" | "conflict"}`` from the 'cytorch.onnx' entry-point
    group (finding the converters needs no onnx package); a name not listed has none."""
    from . import export
    status = {}
    for e in export._registry.discover():
        status[e.name] = "conflict" if e.conflict else "yes" if e.cls is not None else "failed"
    return status


# -- summary ------------------------------------------------------------------------------------
def _load_saved(path):
    from .saving import load_model
    return load_model(path)


def cmd_summary(args, out):
    from . import models
    name = args.model
    input_shape = tuple(args.input_shape) if args.input_shape else None
    if name.endswith(".npz") or os.path.sep in name or os.path.isfile(name):
        if input_shape is not None:
            raise UsageError("--input-shape applies to presets, not to a saved model "
                             f"({name}), whose input shape is fixed")
        if not os.path.isfile(name):
            raise UsageError(f"no such model file: {name}")
        model = _user_step(lambda: _load_saved(name))
    elif name == "auto":
        size = DEFAULT_SIZE["auto"]
        model = _user_step(lambda: _make_model("auto", input_shape or (size, size, 1), None))
    else:
        preset = _user_step(lambda: models.get(name))
        model = _user_step(lambda: preset(input_shape=input_shape))
    model.summary(print_fn=lambda text: print(text, file=out))
    return 0


# -- export -------------------------------------------------------------------------------------
def cmd_export(args, out):
    from . import export
    if not os.path.isfile(args.model):
        raise UsageError(f"no such model file: {args.model}")
    if os.path.abspath(args.output) == os.path.abspath(args.model) or (
            os.path.exists(args.output) and os.path.samefile(args.output, args.model)):
        raise UsageError(f"OUTPUT {args.output} is the model file itself: give another name, "
                         f"such as {os.path.splitext(args.output)[0]}.onnx")
    model = _user_step(lambda: _load_saved(args.model))
    opset = export.DEFAULT_OPSET if args.opset is None else args.opset
    try:
        path = _user_step(lambda: export.to_onnx(model, args.output, opset=opset,
                                                 fold_batchnorm=args.fold_batchnorm))
    except ImportError as exc:   # the onnx package is missing: say what to install
        raise UsageError(str(exc).split(";")[0]) from exc
    shape = ", ".join(map(str, model.input_shape))
    print(f"Wrote {path}: ONNX opset {opset}, input 'input' (batch, {shape}) float32 "
          f"channels-last, output 'output' (batch, {', '.join(map(str, model.output_shape))}), "
          f"{len(model.layers)} layers, {model.count_params():,} parameters.\n"
          f"Open it in Netron (https://netron.app) or run it with onnxruntime.", file=out)
    return 0


# -- info ---------------------------------------------------------------------------------------
def cmd_info(args, out):
    from . import info
    info.show_build(file=out)
    return 0


# -- new-plugin ---------------------------------------------------------------------------------
def cmd_new_plugin(args, out):
    from . import plugin_kit
    names = _user_step(lambda: plugin_kit.plugin_names(args.name, args.class_name))
    path = _user_step(lambda: plugin_kit.new_plugin(args.name, args.directory, args.class_name))
    print(f"Wrote {path}: the layer {names.class_name}, entry point {names.entry_point!r} in "
          f"the cytorch.layers group, package {names.package}, distribution "
          f"{names.distribution}:", file=out)
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        print(f"  {file.relative_to(path.parent)}", file=out)
    print(f"Next (in the environment where cytorch is installed):\n"
          f"  cd {path}\n"
          f"  python -m pip install -e \".[test]\"\n"
          f"  python -m pytest\n"
          f"  cytorch layers", file=out)
    return 0


# -- plumbing -----------------------------------------------------------------------------------
def _user_step(step):
    """Run ``step()``; the exceptions a wrong model name, shape or file raise become a
    ``UsageError`` carrying their message (on one line)."""
    try:
        return step()
    except (KeyError, ValueError, TypeError, OSError) as exc:  # ShapeError is a ValueError
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise UsageError(" ".join(str(message).split())) from exc


def main(argv=None):
    """Run the ``cytorch`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit
    status: 0 on success, 2 for a user mistake (one line on stderr), 1 when the kernels are
    not built."""
    from .errors import NotBuiltError
    parser = build_parser()
    out = sys.stdout
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # argparse would send everyone to 'cytorch --help'; the options are here
            where = f"{PROG} {args.command}" if args.command else PROG
            raise UsageError(f"unrecognized arguments: {' '.join(unknown)} (see '{where} "
                             f"--help')")
        if args.command is None:
            raise UsageError("missing COMMAND: one of train, layers, summary, info, new-plugin, "
                             f"export (see '{PROG} --help')")
        return args.run(args, out)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except NotBuiltError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `cytorch layers | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
