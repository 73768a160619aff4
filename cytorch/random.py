"""One place for randomness: initializers, dropout masks and shuffling all draw from here.

``cytorch.set_seed(n)`` restarts a root ``numpy.random.SeedSequence``; every generator made
afterwards without an explicit seed is spawned from it in creation order, so the same seed and
the same program give bit-identical training.  A layer or call given ``seed=`` uses exactly that.
"""
import numpy as np

from ._checks import is_int

_root = {"seq": np.random.SeedSequence()}


def _is_seed_int(seed):
    return is_int(seed) and seed >= 0


def set_seed(seed):
    """Seed every default generator cytorch makes from now on."""
    if seed is None:
        _root["seq"] = np.random.SeedSequence()
        return
    if not _is_seed_int(seed):
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    _root["seq"] = np.random.SeedSequence(int(seed))


def check_seed(seed, name="seed"):
    """``seed`` if ``make_rng`` accepts it (None, an int >= 0, a ``numpy.random.Generator``
    or a ``RandomState``); else ValueError naming ``name``."""
    if seed is None or _is_seed_int(seed) or \
            isinstance(seed, (np.random.Generator, np.random.RandomState)):
        return seed
    raise ValueError(f"{name} must be a non-negative int, a numpy.random.Generator or None, "
                     f"got {seed!r}")


def make_rng(seed=None):
    """A ``numpy.random.Generator``: from ``seed`` if given (an int, a Generator or a
    ``RandomState``), else the next child of the global seed sequence."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(seed.randint(0, 2**31 - 1, size=4))
    if seed is not None:
        return np.random.default_rng(seed)
    return np.random.default_rng(_root["seq"].spawn(1)[0])
