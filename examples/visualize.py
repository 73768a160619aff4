"""
Pictures of a trained LeNet-5
=============================

Pictures of a trained LeNet-5: its first-layer filters, one digit's activation maps through
every layer, and the learning curves.

Trains LeNet-5 on the built-in digits (32x32, a fifth held out for validation), then writes::

    OUTDIR/filters.png       the 6 learned 5x5 filters of the first convolution
    OUTDIR/activations.png   one test digit through every convolution and pooling layer
    OUTDIR/curves.png        loss and accuracy per epoch, training and validation

Run it::

    python examples/visualize.py [OUTDIR] [--epochs N] [--quick]      (needs matplotlib)

OUTDIR defaults to ./cytorch-pictures.
"""
import argparse
import os

import cytorch
from cytorch import viz
from cytorch.datasets import load_digits


def main(argv=None):
    parser = argparse.ArgumentParser(description='Pictures of a trained LeNet-5')
    parser.add_argument("outdir", nargs="?", default="cytorch-pictures",
                        help="directory for the PNG files, created if needed (default: "
                             "%(default)s)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 epoch (for the tests)")
    # parse_known_args: as a notebook (the gallery's download) it ignores the kernel's own
    # arguments
    args, _ = parser.parse_known_args(argv)
    epochs = 1 if args.quick else args.epochs
    os.makedirs(args.outdir, exist_ok=True)

    X, y = load_digits(size=32)
    model = cytorch.models.lenet5(seed=0)
    model.compile(optimizer=cytorch.optimizers.Adam(learning_rate=3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(X, y, batch_size=32, epochs=epochs, validation_split=0.2, seed=0,
                        verbose=2)
    digit = len(X) - 1  # from the validation part (validation_split takes the last 20%)
    print(f"final validation accuracy {history.history['val_accuracy'][-1]:.3f}; "
          f"digit #{digit} is {'an' if y[digit] == 8 else 'a'} {y[digit]}, predicted "
          f"{model.predict(X[digit:digit + 1]).argmax()}")

    for name, draw in (
            ("filters.png", lambda path: viz.plot_filters(model, path=path)),
            ("activations.png", lambda path: viz.plot_activations(model, X[digit], path=path)),
            ("curves.png", lambda path: history.plot(path=path))):
        path = os.path.join(args.outdir, name)
        fig = draw(path)
        width, height = (round(v) for v in fig.get_size_inches() * fig.dpi)
        print(f"wrote {os.path.abspath(path)} ({width}x{height} pixels)")
    return 0


if __name__ == "__main__":
    main()
