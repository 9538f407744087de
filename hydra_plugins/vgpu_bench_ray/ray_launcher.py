"""The suite's Ray launcher for Hydra (configs/hydra/launcher/ray.yaml). Hydra finds
launchers only under the `hydra_plugins` namespace package; the work is done by
runners/parent/ray_launch.py. Ray is imported only when a sweep is launched: Hydra imports
every plugin module at each start."""

from typing import Any, Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class RayLauncher(Launcher):
    def __init__(self, address: Optional[str] = None, remote: Optional[Any] = None) -> None:
        self.address = address
        self.remote = remote
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from runners.parent import ray_launch

        return ray_launch.launch(self, job_overrides, initial_job_idx)
