"""`workload=train_ddp`: data-parallel training (DistributedDataParallel) over
workload.processes ranks started by torchrun: NCCL between GPUs, gloo on the CPU. The
same training on one process runs first, as the reference of the scaling efficiency
(N-process throughput / (N x one-process throughput))."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from runners.config import _check
from runners.contracts import Metric
from runners.scenarios import Scenario, scenarios
from runners.scenarios.train import TrainConfig

SCALING_EFFICIENCY = Metric("scaling_efficiency", "ratio", "N-process throughput / (N x one-process throughput)")
SINGLE_PROCESS_THROUGHPUT = Metric("single_process_throughput", "samples/s", "the one-process reference's throughput")


@dataclass
class TrainDdpConfig(TrainConfig):
    processes: int = 2  # ranks: one GPU each on a GPU backend, gloo processes on the CPU

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.processes >= 1, f"workload.processes must be >= 1, got {self.processes}")


@scenarios.register
class TrainDdp(Scenario):
    name = "train_ddp"
    config_class = TrainDdpConfig
    summary = "data-parallel training over torchrun ranks"
    flops_factor = 3.0
    time_limited = False  # each rank waits for the others' gradients: all run the same steps

    def check(self, config, entry, backend):
        backend.check_ranks(config.workload.processes)

    def plan(self, config, device):
        if device != "cpu" or config.backend.threads is not None:
            return config
        # Like against like: every rank and the one-process reference get the same share of the
        # cores. Left alone, torchrun gives ranks one thread each only when it starts several,
        # and a reference on all cores made the efficiency swing from 30% to 1800% with load.
        threads = max(1, len(os.sched_getaffinity(0)) // config.workload.processes)
        return dataclasses.replace(config, backend=dataclasses.replace(config.backend, threads=threads))

    def ranks(self, workload):
        return workload.processes

    def reference(self, config):
        if config.workload.processes == 1:
            return None
        return dataclasses.replace(config, workload=dataclasses.replace(config.workload, processes=1))

    def summarize(self, reference, run, group):
        one = reference.value("throughput")
        group.set(SINGLE_PROCESS_THROUGHPUT, one)
        group.set(SCALING_EFFICIENCY, run.value("throughput") / (run.config["workload"]["processes"] * one))

    def build_step(self, framework, entry, workload, shape, seed):
        return framework.train_step(entry, workload, shape, seed, distributed=True)

    def throughput(self, own, result):
        """Gather every rank's throughput; the run's is their sum."""
        import torch
        import torch.distributed as dist

        device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_initialized() else "cpu"
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (own, device))
        per_rank = [throughput for throughput, _ in gathered]
        result.details["ddp"] = {
            "world_size": dist.get_world_size(),
            "rank": dist.get_rank(),
            "backend": dist.get_backend(),
            "per_rank_throughput": per_rank,
            "per_rank_device": [device for _, device in gathered],
        }
        return sum(per_rank)
