"""FER2013's Usage splits: their names, and the checks of the splits a caller asks for.

The lowest layer of the data modules: :mod:`skfer.datasets`, :mod:`skfer.ferplus` and
:mod:`skfer.integrity` build on it, and it imports none of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import DataFileError

__all__ = ["SPLIT_ATTRIBUTES", "check_splits", "present_splits", "received"]

SPLIT_ATTRIBUTES = {"Training": "train", "PublicTest": "public_test", "PrivateTest": "private_test"}
"""Each Usage name and the attribute of a loaded Bunch that holds its split."""


def present_splits(wanted, present, source, splits) -> tuple[str, ...]:
    """``wanted`` (None: all of ``present``), or :class:`DataFileError` naming what is absent."""
    if wanted is None:
        return tuple(present)
    missing = [name for name in wanted if name not in present]
    if missing:
        raise DataFileError(
            f"Split(s) {missing} requested but not in '{source}', which holds {list(present)}. "
            f"Request only splits that are present. Received: splits={splits!r}"
        )
    return tuple(wanted)


def check_splits(splits: Sequence[str] | None) -> tuple[str, ...] | None:
    """Map requested split names (Usage or attribute names) to Usage names."""
    if splits is None:
        return None
    if isinstance(splits, str):
        splits = [splits]
    by_attribute = {attribute: name for name, attribute in SPLIT_ATTRIBUTES.items()}
    names = []
    for split in splits:
        name = by_attribute.get(split, split)
        if name not in SPLIT_ATTRIBUTES:
            raise ValueError(
                f"Unknown FER2013 split {split!r}. Use one of {list(SPLIT_ATTRIBUTES)} "
                f"(or {list(by_attribute)}). Received: splits={list(splits)}"
            )
        names.append(name)
    if not names:
        raise ValueError("splits= is empty; name at least one split or pass None for all.")
    return tuple(names)


def received(value: str, limit: int = 80) -> str:
    """Return the ``Received: ...`` tail of an error message, truncated to ``limit``."""
    if len(value) > limit:
        value = value[:limit] + "..."
    return f"Received: {value!r}"
