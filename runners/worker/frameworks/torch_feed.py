"""Where a PyTorch step's batch comes from (workload.inputs): a batch kept on the device,
copied from host memory each step, or taken from a DataLoader with workers; and the
bytes and copies that costs, counted as they are issued."""

from __future__ import annotations

from typing import Any


def _tensors(tree: Any) -> list:
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in _tensors(v)]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in _tensors(v)]
    return [tree] if hasattr(tree, "nbytes") else []


def move(batch: Any, device, copy: bool = False) -> Any:
    if isinstance(batch, dict):
        return {k: move(v, device, copy) for k, v in batch.items()}
    return batch.to(device, non_blocking=True, copy=copy) if hasattr(batch, "to") else batch


class _Samples:
    """A map-style dataset over a seeded synthetic pool, one sample per index: what a
    DataLoader's workers read and collate, as from a real dataset in memory."""

    def __init__(self, pool: dict):
        self.pool, self.size = pool, len(next(iter(pool.values())))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        return {k: v[index] for k, v in self.pool.items()}


class TorchFeed:
    """Where each step's batch comes from (workload.inputs) and the copies it costs."""

    def __init__(self, framework: Any, entry, workload, shape, seed: int):  # framework: a TorchFramework
        torch, traffic = framework.torch, framework.traffic
        self.torch, self.device, self.traffic = torch, framework.torch_device, traffic
        self.mode = workload.inputs.value
        traffic.inputs = self.mode
        traffic.pinned = bool(workload.pinned and framework.device == "cuda")  # pinning needs a CUDA device
        batch_size = workload.batch_size
        if self.mode == "loader":
            pool = entry.make_batch(2 * batch_size, shape, seed)  # two batches of distinct samples
            loader = torch.utils.data.DataLoader(
                _Samples(pool),
                batch_size=batch_size,
                drop_last=True,
                num_workers=workload.loader_workers,
                pin_memory=traffic.pinned,
                persistent_workers=workload.loader_workers > 0,
                generator=torch.Generator().manual_seed(seed),
                shuffle=True,
            )
            self._batches = self._forever(loader)
        else:
            batch = entry.make_batch(batch_size, shape, seed)
            if traffic.pinned:
                batch = {k: v.pin_memory() for k, v in batch.items()}
            self.host_batch = batch
            self._host_sizes = [t.nbytes for t in _tensors(batch)]  # counted once: the batch never changes
            if self.mode == "device":
                self.placed = move(batch, self.device)

    @staticmethod
    def _forever(loader):
        while True:
            yield from loader

    def next(self) -> Any:
        """The step's batch on the device; host and loader modes copy it there now."""
        if self.mode == "device":
            return self.placed
        if self.mode == "loader":
            host = next(self._batches)
            self.traffic.to_device([t.nbytes for t in _tensors(host)])
        else:
            host = self.host_batch
            self.traffic.to_device(self._host_sizes)
        # copy=True: on the CPU backend the batch is copied too, as it would be to a device.
        return move(host, self.device, copy=True)

    def back(self, outputs: Any) -> Any:
        """Inference with data in host memory: the outputs come back to the host."""
        if self.mode == "device":
            return outputs
        tensors = _tensors(outputs)
        self.traffic.to_host([t.nbytes for t in tensors])
        return [t.to("cpu", copy=True) for t in tensors]
