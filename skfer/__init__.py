"""skfer: facial-expression recognition by transfer learning and ensembles, inside scikit-learn.

The public names load lazily, so that ``skfer.datasets`` and the ``skfer`` command's ``--help``
do not import TensorFlow.
"""

from importlib import import_module

__version__ = "0.2.0"

_LAZY = {
    "TransferCNNClassifier": "skfer.classifier",
    "OneVsAllExperts": "skfer.experts",
    "get_backbone": "skfer.backbones",
    "list_backbones": "skfer.backbones",
    "load_image_folder": "skfer.datasets",
    "load": "skfer.persistence",
    "save": "skfer.persistence",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skfer' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
