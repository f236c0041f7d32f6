# The dialect registry: name → module; a fourth maker is one more module and one more line here.
from __future__ import annotations

import importlib

from drivers.errors import Unsupported

# name → module under drivers.reader.dialects; each module has DIALECT (a Dialect) and a Device (its twin).
_MODULES = {"gold-csv": "gold_csv", "enzyme-print": "enzyme_print", "frame-crc8": "frame_crc8"}


def names() -> tuple[str, ...]:
    return tuple(_MODULES)


def module(name: str):
    if name not in _MODULES:
        raise Unsupported("reader dialects", f"dialect {name!r} unknown; one of {', '.join(_MODULES)}")
    return importlib.import_module(f"drivers.reader.dialects.{_MODULES[name]}")


def get(name: str):
    """The Dialect object for name."""
    return module(name).DIALECT
