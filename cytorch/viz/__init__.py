"""Pictures of what a network learned and how it decides.

Needs matplotlib (the optional extra: ``pip install "cytorch-edu[plot]"``).  Every function
returns a ``matplotlib.figure.Figure`` and shows it where you are:

* in Jupyter, inline under the cell (no ``%matplotlib inline`` needed);
* in a script, in a window when there is a display, else as a PNG in the temporary folder,
  with a line on stderr saying where;
* ``path="x.png"`` writes the PNG there (in a script that is all it does); ``show=False``
  only returns the figure.

Training:  ``plot_history`` (also ``History.plot()``), ``plot_confusion_matrix``,
``plot_misclassified``.  Inside the network: ``plot_filters``, ``plot_activations``,
``plot_saliency``, ``plot_grad_cam`` (numbers from ``cytorch.explain``).  The course:
``plot_convolution_steps`` (window, products, sum) and ``convolve_by_hand``.

>>> from cytorch import viz                                        # doctest: +SKIP
>>> history = model.fit(X, y, epochs=5, validation_split=0.2)      # doctest: +SKIP
>>> history.plot()                                                 # doctest: +SKIP
>>> viz.plot_filters(model, path="filters.png")                    # doctest: +SKIP
>>> viz.plot_activations(model, X[0], label=y[0])                  # doctest: +SKIP
>>> viz.plot_confusion_matrix(y, model.predict(X))                 # doctest: +SKIP
"""
from ..explain import layer_outputs
from .convolution import convolve_by_hand, plot_convolution_steps
from .network import plot_activations, plot_filters, plot_grad_cam, plot_saliency
from .results import plot_confusion_matrix, plot_history, plot_misclassified

__all__ = ["plot_history", "plot_confusion_matrix", "plot_misclassified", "plot_filters",
           "plot_activations", "plot_saliency", "plot_grad_cam", "plot_convolution_steps",
           "convolve_by_hand", "layer_outputs"]
