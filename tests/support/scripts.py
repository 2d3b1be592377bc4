"""Import a script of the checkout (``scripts/``, ``examples/``) by path: they are not packages."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["import_script"]


def import_script(path: Path, name: str) -> ModuleType:
    """Execute ``path`` as a fresh module registered as ``name`` in ``sys.modules``.

    The module stays registered: dataclasses and pydantic look a class's module up there
    while the class is built and when its annotations are resolved later.

    Raises:
        ImportError: ``path`` cannot be loaded as a Python module.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
