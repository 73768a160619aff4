"""
CNNClassifier in scikit-learn pipelines and searches
====================================================

CNNClassifier as an ordinary scikit-learn estimator: Pipeline, GridSearchCV, cross_val_score.

scikit-learn's digits arrive as flat rows of 64 pixel counts (0..16).  A ``MinMaxScaler``
scales them to [0, 1] -- it only knows 2-D arrays -- and ``CNNClassifier(input_shape=(8, 8, 1))``
reshapes each row back into an image before its convolutions.  The search tunes the network
and the learning rate with 3-fold cross-validation on the training part; the held-out test
part is touched once, at the end.

Every fit stops by itself: with ``early_stopping=True`` the classifier holds out 10% of what it
is given (``validation_fraction``) and stops once that accuracy has not improved for 5 epochs
in a row (``n_iter_no_change``), here after 15 to 30 epochs.  ``max_iter=100`` is a ceiling
none of them reaches; a fit that did reach it would warn with ``ConvergenceWarning``
(stopped while still learning).  Without early stopping, the rule is on the training loss,
which keeps creeping down for 60 to 150 epochs on these digits.

Run it::

    python examples/sklearn_pipeline.py [--quick]
"""
import argparse
import time

from sklearn.datasets import load_digits
from sklearn.metrics import classification_report
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from cytorch import CNNClassifier

# Two candidate networks as layer specs (the output layer is added from the classes seen).
SMALL = [("conv2d", {"filters": 8, "kernel_size": 3, "activation": "relu"}),
         ("max_pool2d", {"pool_size": 2}), ("flatten", {})]
WIDER = [("conv2d", {"filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"}),
         ("max_pool2d", {"pool_size": 2}),
         ("conv2d", {"filters": 32, "kernel_size": 3, "activation": "relu"}),
         ("flatten", {}), ("dense", {"units": 64, "activation": "relu"})]


def main(argv=None):
    parser = argparse.ArgumentParser(description='CNNClassifier in scikit-learn pipelines and searches')
    parser.add_argument("--quick", action="store_true",
                        help="a third of the data (for the tests)")
    parser.add_argument("--n-jobs", type=int, default=2, help="parallel fits of the search")
    # parse_known_args: as a notebook (the gallery's download) it ignores the kernel's own
    # arguments
    args, _ = parser.parse_known_args(argv)

    X, y = load_digits(return_X_y=True)
    if args.quick:
        X, y = X[::3], y[::3]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    pipe = Pipeline([
        ("scale", MinMaxScaler()),
        ("cnn", CNNClassifier(layers=SMALL, input_shape=(8, 8, 1), batch_size=32,
                              early_stopping=True, max_iter=100, random_state=0)),
    ])
    print(f"{len(X_train)} training and {len(X_test)} test digits of 8x8 = 64 features\n")

    start = time.perf_counter()
    scores = cross_val_score(pipe, X_train, y_train, cv=3)
    print(f"cross_val_score (3 folds) of the small net: {scores.round(3)}, "
          f"mean {scores.mean():.3f}  [{time.perf_counter() - start:.1f}s]")

    grid = {"cnn__layers": [SMALL, WIDER], "cnn__learning_rate": [1e-3, 3e-3]}
    search = GridSearchCV(pipe, grid, cv=3, n_jobs=args.n_jobs)
    start = time.perf_counter()
    search.fit(X_train, y_train)
    print(f"GridSearchCV over {len(search.cv_results_['params'])} candidates x 3 folds "
          f"[{time.perf_counter() - start:.1f}s, n_jobs={args.n_jobs}]:")
    for params, mean, std in zip(search.cv_results_["params"],
                                 search.cv_results_["mean_test_score"],
                                 search.cv_results_["std_test_score"]):
        net = "WIDER" if params["cnn__layers"] == WIDER else "SMALL"
        print(f"  layers={net:<5}  learning_rate={params['cnn__learning_rate']:<6}  "
              f"accuracy {mean:.3f} +- {std:.3f}")
    best_net = "WIDER" if search.best_params_["cnn__layers"] == WIDER else "SMALL"
    print(f"best: layers={best_net}, learning_rate={search.best_params_['cnn__learning_rate']}"
          f" (cv accuracy {search.best_score_:.3f})\n")

    cnn = search.best_estimator_.named_steps["cnn"]
    print(f"refit on all training data: {cnn.n_iter_} epochs, "
          f"{cnn.model_.count_params():,} parameters, classes {cnn.classes_.tolist()}")
    print(f"test accuracy of the best pipeline: {search.score(X_test, y_test):.3f}\n")
    print(classification_report(y_test, search.predict(X_test), digits=3))
    return 0


if __name__ == "__main__":
    main()
