"""`workload=train`: forward, loss, backward and an optimizer step (SGD with momentum)."""

from runners.scenarios import Scenario, scenarios


@scenarios.register
class Train(Scenario):
    name = "train"
    summary = "forward + loss + backward + optimizer step"
    flops_factor = 3.0  # a backward pass costs about twice the forward

    def build_step(self, framework, entry, workload, shape, seed):
        return framework.train_step(entry, workload.batch_size, shape, seed)
