"""Test cases for every gradient rule, one module per rule family (mirrors the rules package)."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
