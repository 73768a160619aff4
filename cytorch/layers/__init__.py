"""The built-in layers, and the registry that finds every layer by name.

>>> from cytorch import layers as L
>>> conv = L.Conv2D(6, 5, activation="relu")
>>> L.get("conv2d") is L.Conv2D
True

``available()`` and ``get(name)`` look through the ``cytorch.layers`` entry-point group, where
the built-ins are registered exactly like third-party plugins (see ``cytorch.registry``).
"""
from ..registry import available, discover, get, name_of, refresh
from .advanced_activations import ELU, LeakyReLU
from .base import Layer
from .context import CallContext
from .conv import Conv2D
from .core import Activation, Dense, Dropout, Flatten, Input
from .depthwise import DepthwiseConv2D, SeparableConv2D
from .merge import Add, Average, Concatenate, Maximum, Multiply, Subtract
from .normalization import BatchNormalization
from .regularization import SpatialDropout2D
from .reshaping import Reshape, UpSampling2D, ZeroPadding2D
from .pooling import (AveragePooling2D, AvgPool2D, GlobalAveragePooling2D, GlobalMaxPooling2D,
                      GlobalMinPooling2D, MaxPool2D, MaxPooling2D, MinPooling2D)

__all__ = ["Layer", "CallContext", "Input", "Dense", "Flatten", "Activation", "Dropout", "Conv2D",
           "MaxPooling2D", "MaxPool2D", "AveragePooling2D", "AvgPool2D", "MinPooling2D",
           "GlobalMaxPooling2D", "GlobalAveragePooling2D", "GlobalMinPooling2D", "Add",
           "Concatenate", "BatchNormalization", "LeakyReLU", "ELU", "ZeroPadding2D", "Reshape",
           "UpSampling2D", "SpatialDropout2D", "DepthwiseConv2D", "SeparableConv2D",
           "Multiply", "Subtract", "Average", "Maximum", "available", "discover", "get", "name_of", "refresh"]
