"""Plain Python entries (the self-test workload): no device, nothing to synchronize."""

from runners.worker.frameworks import Framework, frameworks


@frameworks.register
class PythonFramework(Framework):
    name = "python"

    def infer_step(self, entry, batch_size, shape, seed):
        model, batch = entry.build(shape), entry.make_batch(batch_size, shape, seed)
        return lambda: entry.forward(model, batch)

    def train_step(self, entry, batch_size, shape, seed, distributed=False):
        if distributed:
            return super().train_step(entry, batch_size, shape, seed, distributed)
        model, batch = entry.build(shape), entry.make_batch(batch_size, shape, seed)
        return lambda: entry.loss(model, batch)
