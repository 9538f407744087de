"""Make `import torchvision` (and so `from transformers import ...`) work in the project's
environment whatever is imported first, without importing torch until torchvision is.

`make setup` puts a one-line `.pth` file into the virtual environment that calls
`install()` at interpreter start. The finder it adds does nothing for any other module;
the first time torchvision is looked up it defines the operator schemas a CPU-only torch
lacks (zoo.torch_support.ensure_torchvision), removes itself and lets the normal import
go on. Where torchvision's extension loads (a matching CUDA torch) nothing is defined."""

from __future__ import annotations

import importlib.abc
import sys


class TorchvisionFirstImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            try:
                from zoo.torch_support import ensure_torchvision

                ensure_torchvision()
            except ImportError:  # no torch here: torchvision's own import will say so
                pass
        return None  # the regular finders import the module


def install() -> None:
    if "torchvision" not in sys.modules and not any(isinstance(f, TorchvisionFirstImport) for f in sys.meta_path):
        sys.meta_path.insert(0, TorchvisionFirstImport())
