"""Sphinx configuration of the skfer documentation.

Build (offline, warnings are errors; ``-E`` re-reads every page so no warning is skipped)::

    python -m sphinx -W --keep-going -E -b html docs docs/_build/html
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document the checkout, installed or not

# Importing skfer imports TensorFlow: keep it quiet and off any accelerator.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import skfer  # noqa: E402

project = "skfer"
author = "skfer developers"
copyright = "skfer developers, MIT licence"  # noqa: A001
release = skfer.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Markdown (MyST): ```python fences, heading anchors for [text](page.md#anchor) links.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: members in source order, type hints in the signature only (the docstrings give the
# types in words), no docstrings inherited from Keras or scikit-learn (they are not numpydoc
# reST and are not ours). No "members" default: Sphinx 9 then ignores explicit :members: lists.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
python_use_unqualified_type_names = True
autodoc_inherit_docstrings = False
autodoc_default_options = {"show-inheritance": True}

# napoleon reads the numpydoc sections. ``Attributes`` become attribute entries: ``:ivar:``
# fields would garble the ``a, b : type`` lines that some docstrings use.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = False
napoleon_use_rtype = False
napoleon_preprocess_types = False

html_theme = "alabaster"
html_title = f"skfer {release}"
html_static_path: list[str] = []
html_theme_options = {"description": "Facial-expression recognition for scikit-learn"}


def _skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated metadata-routing setters (``set_fit_request``...).

    scikit-learn adds them to every estimator; their docstrings cite scikit-learn's own
    glossary and labels, which do not exist here.
    """
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return skip


def _layer_signature(app, what, name, obj, options, signature, return_annotation):
    """Show a Keras layer's ``__init__`` signature, not ``(*args, **kwargs)``.

    ``keras.layers.Layer`` defines ``__new__(cls, *args, **kwargs)``, which autodoc prefers.
    """
    import keras

    if what == "class" and isinstance(obj, type) and issubclass(obj, keras.layers.Layer):
        try:
            signature = inspect.signature(obj.__init__, eval_str=True)
        except (NameError, TypeError):  # an annotation that does not evaluate
            signature = inspect.signature(obj.__init__)
        parameters = list(signature.parameters.values())[1:]
        return str(inspect.Signature(parameters)), return_annotation
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-signature", _layer_signature)
