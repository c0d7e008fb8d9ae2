"""The PyTorch models of the paper and beyond, with their declared initialisation.

>>> from pathstats import nets
>>> model = nets.build("conv6", (3, 32, 32))
>>> sorted(nets.ARCHITECTURES)[:3]
['conv6', 'conv6-avgpool', 'conv6-maxpool']
"""

from .base import InitialisedNet
from .registry import ARCHITECTURES, Architecture, UnknownArchitectureError, build, get, measured_gap, shape_for_d

__all__ = ["ARCHITECTURES", "Architecture", "InitialisedNet", "UnknownArchitectureError", "build", "get", "measured_gap",
           "shape_for_d"]
