"""Where skfer looks for its data and weight files when no path is given.

The folder, :func:`skfer_home`, holds ``data/fer2013/fer2013.csv.gz``,
``data/ferplus/fer2013new.csv`` and ``weights/``; the ``skfer`` command's ``--data``,
``--ferplus-labels`` and ``--weights-dir`` default to those paths in it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["DATA_FILES", "skfer_home"]

# Paths inside skfer_home(), by what they hold.
DATA_FILES = {
    "fer2013": "data/fer2013/fer2013.csv.gz",
    "ferplus": "data/ferplus/fer2013new.csv",
    "weights": "weights",
}

_CHECKOUT = Path(__file__).resolve().parents[1]


def skfer_home(environ: Mapping[str, str] | None = None) -> Path:
    """The folder of skfer's default data and weight files.

    The first that applies:

    1. ``$SKFER_HOME``;
    2. ``$SKFER_SHARED_DIR`` (the folder the tests and CI read the real data from);
    3. ``shared/`` beside the checkout, for an editable install from a checkout that has one;
    4. ``~/skfer``.

    Parameters
    ----------
    environ : mapping, optional
        The environment variables; default ``os.environ``.

    Returns
    -------
    pathlib.Path
        The folder; it need not exist.
    """
    environ = os.environ if environ is None else environ
    for variable in ("SKFER_HOME", "SKFER_SHARED_DIR"):
        if environ.get(variable):
            return Path(environ[variable]).expanduser()
    shared = _CHECKOUT.parent / "shared"
    if (_CHECKOUT / "pyproject.toml").is_file() and shared.is_dir():
        return shared
    return Path.home() / "skfer"
