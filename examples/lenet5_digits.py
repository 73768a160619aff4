"""
LeNet-5 on the handwritten digits
=================================

The main job as a script: LeNet-5 on the built-in handwritten digits.

What ``cytorch train`` does, written out so each step can be read and changed:

1. load scikit-learn's 1,797 digits as 32x32x1 images (the 8x8 originals, upsampled to a 20x20
   box and centred with a margin, like MNIST as LeNet-5 read it);
2. hold out a stratified fifth for testing;
3. build LeNet-5 (61,706 parameters), print its summary;
4. train with Adam, shrinking the step size after every epoch, with a progress bar;
5. report the test accuracy and the confusion matrix, and save the model.

Run it::

    python examples/lenet5_digits.py [--epochs N] [--save PATH] [--quick]
"""
import argparse

import numpy as np
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import train_test_split

import cytorch
from cytorch.callbacks import LambdaCallback
from cytorch.datasets import load_digits


def main(argv=None):
    parser = argparse.ArgumentParser(description='LeNet-5 on the handwritten digits')
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", metavar="PATH", help="write the trained model (.npz)")
    parser.add_argument("--quick", action="store_true", help="1 epoch (for the tests)")
    # parse_known_args: as a notebook (the gallery's download) it ignores the kernel's own
    # arguments
    args, _ = parser.parse_known_args(argv)
    epochs = 1 if args.quick else args.epochs

    # 1-2. data: (1797, 32, 32, 1) float32 in [0, 1], labels 0..9
    X, y = load_digits(size=32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, stratify=y, random_state=args.seed)
    print(f"{len(X_train)} training and {len(X_test)} test digits, {X.shape[1:]} each")

    # 3. the network: C1 6@5x5 tanh, S2 avg-pool, C3 16@5x5 tanh, S4 avg-pool, 120, 84, 10
    cytorch.set_seed(args.seed)
    model = cytorch.models.lenet5(seed=args.seed)
    model.summary()

    # 4. training: Adam, the step size multiplied by 0.75 after every epoch
    optimizer = cytorch.optimizers.Adam(learning_rate=3e-3)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    decay = LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(
        optimizer, "learning_rate", optimizer.learning_rate * 0.75))
    model.fit(X_train, y_train, batch_size=32, epochs=epochs, callbacks=[decay],
              seed=args.seed)

    # 5. results
    loss, accuracy = model.evaluate(X_test, y_test)
    predicted = model.predict(X_test).argmax(axis=1)
    print(f"\nTest loss {loss:.4f}, test accuracy {accuracy:.4f} "
          f"({np.count_nonzero(predicted == y_test)}/{len(y_test)})")
    print("Confusion matrix (rows: true digit, columns: predicted):")
    print("     " + " ".join(f"{d:>3}" for d in range(10)))
    for digit, row in enumerate(confusion_matrix(y_test, predicted, labels=range(10))):
        print(f"  {digit}: " + " ".join(f"{n:>3}" for n in row))
    if args.save:
        model.save(args.save)
        again = cytorch.load_model(args.save)
        assert np.array_equal(again.predict(X_test), model.predict(X_test))
        print(f"saved to {args.save}; cytorch.load_model gives the same predictions")
    return 0


if __name__ == "__main__":
    main()
