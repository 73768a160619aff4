"""
Weight sharing, measured: Conv2D vs LocallyConnected2D
======================================================

Weight sharing, measured: a convolution next to a locally-connected layer on the digits.

Both networks have the same shape -- 16 filters of 3x3, ReLU, 2x2 max pooling, a softmax
layer -- and differ only in the first layer:

* ``Conv2D`` uses the same 16 filters at every position (3*3*1*16 + 16 = 160 parameters);
* ``LocallyConnected2D`` (the ``cytorch-locally-connected`` plugin) learns a separate filter
  for each of the 14x14 output positions: 196 times the weights, for one image size only.

The course's argument for sharing is that a feature worth detecting in one place is worth
detecting everywhere.  The table shows what that buys on 1,797 digits: the parameter count,
the accuracy on the held-out digits, and the accuracy on the same digits moved one pixel
down and right -- a position the locally-connected filters there were never trained on.

Run it::

    python examples/local_vs_conv.py [--epochs N] [--quick]

(needs the plugin: pip install ./plugins/cytorch-locally-connected)
"""
import argparse
import time

import numpy as np
from sklearn.model_selection import train_test_split

import cytorch
from cytorch import layers as L
from cytorch.datasets import load_digits

SIZE = 16


def build(first_layer, seed):
    model = cytorch.Sequential([L.Input((SIZE, SIZE, 1)), first_layer, L.MaxPooling2D(2),
                                L.Flatten(), L.Dense(10, activation="softmax")], seed=seed)
    model.compile(optimizer=cytorch.optimizers.Adam(learning_rate=3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def shift(images, d=1):
    """Move every image ``d`` pixels down and right, filling with background (0)."""
    out = np.zeros_like(images)
    out[:, d:, d:] = images[:, :-d, :-d]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description='Weight sharing, measured: Conv2D vs LocallyConnected2D')
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="2 epochs (for the tests)")
    parser.add_argument("--seed", type=int, default=0)
    # parse_known_args: as a notebook (the gallery's download) it ignores the kernel's own
    # arguments
    args, _ = parser.parse_known_args(argv)
    epochs = 2 if args.quick else args.epochs

    try:
        LocallyConnected2D = cytorch.layers.get("locally_connected2d")
    except (KeyError, ValueError) as exc:
        raise SystemExit(f"the locally-connected plugin is not available ({exc}); install it "
                         f"with:\n    pip install ./plugins/cytorch-locally-connected") from exc

    X, y = load_digits(size=SIZE)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=args.seed)
    print(f"digits {SIZE}x{SIZE}: {len(X_train)} to train, {len(X_test)} to test, "
          f"{epochs} epochs each\n")
    rows = []
    for label, layer in (("Conv2D (shared)", L.Conv2D(16, 3, activation="relu")),
                         ("LocallyConnected2D", LocallyConnected2D(16, 3, activation="relu"))):
        model = build(layer, args.seed)
        start = time.perf_counter()
        model.fit(X_train, y_train, batch_size=32, epochs=epochs, verbose=0, seed=args.seed)
        seconds = time.perf_counter() - start
        _, train_acc = model.evaluate(X_train, y_train)
        _, test_acc = model.evaluate(X_test, y_test)
        _, shifted_acc = model.evaluate(shift(X_test), y_test)
        rows.append((label, layer.count_params(), model.count_params(), train_acc, test_acc,
                     shifted_acc, seconds))

    header = ("first layer", "its params", "total params", "train acc", "test acc",
              "shifted 1px", "fit time")
    print("{:<20} {:>11} {:>13} {:>10} {:>9} {:>12} {:>9}".format(*header))
    for label, first, total, train_acc, test_acc, shifted_acc, seconds in rows:
        print(f"{label:<20} {first:>11,} {total:>13,} {train_acc:>10.3f} {test_acc:>9.3f} "
              f"{shifted_acc:>12.3f} {seconds:>8.1f}s")
    (_, shared, *_), (_, local, *_) = rows
    print(f"\nThe locally-connected layer has {local / shared:.0f}x the parameters of the "
          f"convolution ({local:,} vs {shared:,}): (14*14) positions x (3*3*1*16 + 16).")
    print("With sharing, every filter is trained by every position of every image; without "
          "it, each position's filter learns only from the pixels under it, and the layer "
          "only fits images of one size. On these centred digits the two reach similar test "
          "accuracy; the 'shifted 1px' column shows how each copes with a digit that is not "
          "where the training digits were (the dense layer after both is position-specific, "
          "so both lose accuracy there).")
    return 0


if __name__ == "__main__":
    main()
