"""Importing this package registers every entry: each module here registers its own with
`@models.register`, so adding a model is adding a module (cheap: no framework is imported)."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
