"""Plain Python entries (the self-test workload): no device, nothing to synchronize."""
from runners.frameworks import Framework, frameworks


@frameworks.register
class PythonFramework(Framework):
    name = "python"

    def prepare(self, entry, kind, batch_size, shape, seed):
        model = entry.build(shape)
        batch = entry.make_batch(batch_size, shape, seed)
        run = entry.loss if kind == "train" else entry.forward
        return lambda: run(model, batch)
