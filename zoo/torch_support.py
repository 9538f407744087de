"""Helpers shared by the PyTorch entries. Imported only inside a worker (imports torch)."""

from __future__ import annotations

import glob
import importlib.util
import os

import torch

_torchvision_checked = False


def ensure_torchvision() -> None:
    """Make `import torchvision` work next to a CPU-only torch.

    The registry's torchvision wheel is built against CUDA torch; next to torch+cpu its
    compiled extension does not load and the import fails on `torchvision::nms`
    (transformers imports torchvision too). Only in that case, define the operator
    schemas it expects: models, weights metadata and transforms then work; the
    compiled ops themselves (detection's nms, roi_align) and image decoding do not,
    and no zoo entry uses them. Where the extension loads (a GPU machine with a
    matching CUDA torch) this does nothing.
    """
    global _torchvision_checked
    if _torchvision_checked:
        return
    _torchvision_checked = True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    extension = glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so"))
    try:
        if extension:
            torch.ops.load_library(extension[0])
            return
    except OSError:
        pass
    if hasattr(torch.ops.torchvision, "nms"):
        return
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    ensure_torchvision.library = lib  # keep the Library alive: dropping it unregisters the ops


def generator(seed: int) -> torch.Generator:
    """A CPU generator, so batches are identical on every device (moved there afterwards)."""
    return torch.Generator(device="cpu").manual_seed(seed)
