"""`workload=train`: forward, loss, backward and an optimizer step (SGD with momentum).

By default each step takes its batch from a DataLoader (tf.data for Keras) into pinned
memory and the host synchronizes once per window of steps, as a real training loop that
logs every few steps: a per-step synchronize would add a round trip per step that such a
loop never pays, and overstate what a remoting layer costs it."""

from dataclasses import dataclass

from runners.config import Inputs, Sync, WorkloadConfig
from runners.scenarios import Scenario, scenarios


@dataclass
class TrainConfig(WorkloadConfig):
    inputs: Inputs = Inputs.loader
    pinned: bool = True
    sync: Sync = Sync.window


@scenarios.register
class Train(Scenario):
    name = "train"
    config_class = TrainConfig
    summary = "forward + loss + backward + optimizer step"
    flops_factor = 3.0  # a backward pass costs about twice the forward

    def build_step(self, framework, entry, workload, shape, seed):
        return framework.train_step(entry, workload, shape, seed)
