"""Plain Python entries (the self-test workload): no device, nothing to synchronize, no
data to move (workload.inputs does not apply)."""

from runners.worker.frameworks import Framework, frameworks


@frameworks.register
class PythonFramework(Framework):
    name = "python"

    def _model_and_batch(self, entry, workload, shape, seed):
        self.traffic.inputs = "none"
        model = entry.build(shape)
        self.mark("build")
        return model, entry.make_batch(workload.batch_size, shape, seed)

    def infer_step(self, entry, workload, shape, seed):
        model, batch = self._model_and_batch(entry, workload, shape, seed)
        return lambda: entry.forward(model, batch)

    def train_step(self, entry, workload, shape, seed, distributed=False):
        if distributed:
            return super().train_step(entry, workload, shape, seed, distributed)
        model, batch = self._model_and_batch(entry, workload, shape, seed)
        return lambda: entry.loss(model, batch)

    def batch_step(self, entry, workload, shape, seed, max_batch_size):
        model, _ = self._model_and_batch(entry, workload, shape, seed)

        def batch_step(n):
            entry.forward(model, n)

        return batch_step
