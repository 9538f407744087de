"""`workload=infer`: the forward pass in eval mode without gradients.

By default each step copies its batch from (pageable) host memory to the device and its
outputs back, and the host waits for every step: a request arrives in host memory, its
answer must leave the device, and its latency is what a service reports."""

from runners.scenarios import Scenario, scenarios


@scenarios.register
class Infer(Scenario):
    name = "infer"
    summary = "forward pass without gradients"
    flops_factor = 1.0

    def build_step(self, framework, entry, workload, shape, seed):
        return framework.infer_step(entry, workload, shape, seed)
