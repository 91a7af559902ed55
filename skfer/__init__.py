"""skfer: facial-expression recognition by transfer learning and ensembles, inside scikit-learn."""

from .backbones import get_backbone, list_backbones
from .classifier import TransferCNNClassifier
from .experts import OneVsAllExperts
from .persistence import load

__version__ = "0.1.0"

__all__ = [
    "OneVsAllExperts",
    "TransferCNNClassifier",
    "__version__",
    "get_backbone",
    "list_backbones",
    "load",
]
