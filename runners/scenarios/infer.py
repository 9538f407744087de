"""`workload=infer`: the forward pass in eval mode without gradients."""

from runners.scenarios import Scenario, scenarios


@scenarios.register
class Infer(Scenario):
    name = "infer"
    summary = "forward pass without gradients"
    flops_factor = 1.0

    def build_step(self, framework, entry, workload, shape, seed):
        return framework.infer_step(entry, workload.batch_size, shape, seed)
