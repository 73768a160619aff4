"""NumPy twins of every compiled kernel: same names, same signatures, same argument order.

Read these first.  They are written to be understood, then to be reasonably fast; the Cython
modules in ``cytorch/_kernels`` compute the same numbers (the tests compare them on random
shapes) and ``cytorch.backend("reference")`` runs these instead.

Layout contract, shared with the kernels:

* activations are channels-last, ``x`` has shape ``(N, H, W, C)``;
* conv kernels are ``(kh, kw, C, K)`` and biases ``(K,)``;
* im2col rows are ordered ``(kh, kw, C)``, so ``cols @ w.reshape(-1, K)`` is already
  ``(N, H_out, W_out, K)`` after a reshape;
* one spatial axis: ``H_out = floor((H + P_top + P_bottom - kh) / sh) + 1``.

Arguments arrive validated by ``cytorch.functional`` (contiguous float arrays, resolved padding).
"""
import numpy as np


# ===============================================================================================
# conv2d  (section owned by the conv kernel work)
# ===============================================================================================


# ===============================================================================================
# pooling and dropout  (section owned by the pooling/dropout kernel work)
# ===============================================================================================
