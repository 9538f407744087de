"""A sweep's jobs as Ray tasks on a running cluster (`hydra/launcher=ray`).

The head (the process that ran `make sweep`) composes every job and decides, from each
job's own configuration, what it asks Ray for: CPUs for its threads, a GPU or the share of
one its quota names, a `vgpu` resource for an API-remoting client. Ray starts the job on a
node with those free; there it plans, runs its isolated worker and logs to MLflow, as a
local job does. A Ray worker inherits the environment of `ray start`, not of the sweep, so
what the head's environment decides (results_dir, the tracking store, Hydra's output
folder) is resolved here and sent as plain values.

Not hydra-ray-launcher: its `ray.remote` options are one static dict for every job (a
sweep over backends could not ask each for its own GPU share), and it pins cloudpickle < 3
and pulls boto3 and Ray's dashboard stack for its AWS launcher. See docs/scaling.md."""

from __future__ import annotations

import copy
import logging
import math
import os
import socket
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from runners.errors import UsageError

# The Ray custom resource an API-remoting vGPU client's job asks for: its client may have
# no local GPU at all; a node that can reach the vGPU server advertises how many it may
# hand out (`ray start --resources='{"vgpu": 8}'`).
VGPU_RESOURCE = "vgpu"


def job_options(config, backend) -> dict[str, Any]:
    """The `ray.remote` options of one job: what its planned configuration will use.

    CPUs: its threads (1 when the framework decides) for each rank and tenant. GPUs: one per
    rank, or the share of one that the backend's quota names (MPS sm_percent, HAMi sm_limit,
    a vGPU compute_share), for each tenant, up to the whole device. Ray accounts for these
    shares; the backend is what enforces them on the device."""
    workload = config.workload
    ranks = getattr(workload, "processes", 1) if workload.kind == "train_ddp" else 1
    together, generators = _copies_at_once(config)
    processes = ranks * together
    options: dict[str, Any] = {"num_cpus": (config.backend.threads or 1) * processes + generators, "num_gpus": 0}
    if backend.device != "cuda":
        return options
    share = min(1.0, (backend.compute_share() or 100.0) / 100.0 * together)
    if backend.name == "vgpu":
        options["resources"] = {VGPU_RESOURCE: _whole_above_one(config.backend.vgpus * share)}
        return options
    options["num_gpus"] = _whole_above_one(ranks * share)
    return options


def _copies_at_once(config) -> tuple[int, int]:
    """How many copies of the workload run at once, and the load-generator processes beside them:
    tenants; a serve density search (up to search_max_runs servers) or interference (victim and
    aggressor), each server with its own generators."""
    if config.workload.kind != "serve":
        return config.tenants, 0
    serve = config.serve
    if serve.search.value == "density":
        servers = serve.search_max_runs
    elif serve.aggressor.value != "none":
        servers = 2
    else:
        servers = config.tenants
    return servers, servers * serve.generators


def _whole_above_one(amount: float) -> float:
    """Ray takes a fraction of one device, or whole devices."""
    return amount if amount <= 1 else float(math.ceil(amount))


def pin_to_head(sweep_config: DictConfig) -> None:
    """Replace what would resolve differently on a Ray worker with the head's values."""
    from runners.tracking.write import tracking_uri

    with open_dict(sweep_config):
        results_dir = Path(str(sweep_config.results_dir)).resolve()
        sweep_config.results_dir = str(results_dir)
        tracking = sweep_config.tracking
        if tracking.name == "mlflow" and not tracking.uri:
            tracking.uri = tracking_uri(OmegaConf.to_object(tracking), results_dir)
        sweep_config.hydra.sweep.dir = str(sweep_config.hydra.sweep.dir)
        sweep_config.hydra.sweep.subdir = str(sweep_config.hydra.sweep.subdir)


def _options(sweep_config: DictConfig, extra: dict) -> dict[str, Any]:
    from runners.parent import compose
    from runners.parent.plan import plan

    task_config = copy.deepcopy(sweep_config)  # as Hydra hands it to the job: without its own node
    with read_write(task_config), open_dict(task_config):
        del task_config["hydra"]
    planned = plan(compose.to_config(task_config))
    options = job_options(planned.config, planned.backend)
    if extra.get("resources") and options.get("resources"):
        extra = {**extra, "resources": {**options["resources"], **extra["resources"]}}
    return {**options, **extra}


def _run_job(hydra_context, sweep_config, task_function, singleton_state):
    """On a Ray worker: one job as Hydra runs it (its output folder, its logging)."""
    import ray
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals

    from runners.parent import compose

    context = ray.get_runtime_context()
    granted = {k: v for k, v in context.get_assigned_resources().items() if not k.startswith("node:")}
    job = f"job #{sweep_config.hydra.job.num}"
    gpus = f", GPU ids {ray.get_gpu_ids()} (CUDA_VISIBLE_DEVICES)" if granted.get("GPU") else ""
    print(f"ray: {job} runs on node {context.get_node_id()[:12]} with {granted}{gpus}", flush=True)
    compose.register()
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    try:
        return run_job(
            hydra_context=hydra_context,
            task_function=task_function,
            config=sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    finally:
        # Ray ends a command's workers without their exit handlers, which would close the
        # fork servers (and remove their folders): the servers a job started end with the job.
        from runners.parent import fork_servers

        fork_servers.servers.close()


def cluster_address(address: Optional[str]) -> str:
    """host:port of the cluster's head, found as Ray's `auto` finds it: $RAY_ADDRESS, else the
    file `ray start` leaves in Ray's temporary folder."""
    if address and address != "auto":
        return address.removeprefix("ray://") if address.startswith("ray://") else address
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    tmp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    found = Path(tmp, "ray", "ray_current_cluster")
    if found.is_file() and found.read_text().strip():
        return found.read_text().strip()
    raise UsageError(
        "no Ray cluster found (no RAY_ADDRESS, no cluster started on this machine); start one with "
        "`ray start --head` or name it with RAY_ADDRESS=<host:port> or hydra.launcher.address=<host:port>"
    )


def _reachable(address: str) -> None:
    """Ray retries an unreachable head for minutes; one TCP connection says it in seconds."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"the Ray head at {address} does not answer ({exc}); start it with `ray start --head --port=<port>` "
            f"or name the running one with RAY_ADDRESS=<host:port> or hydra.launcher.address=<host:port>"
        ) from None


def connect(address: Optional[str]):
    """Join the running cluster; never start one (a sweep is not a cluster's owner)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report, ever
    address = cluster_address(address)
    _reachable(address)
    if ipaddress_is_loopback(address.rpartition(":")[0]):
        # Ray on Linux replaces a loopback address by the host's routable one, which a head on
        # loopback does not listen on; this (read when Ray is imported) keeps 127.0.0.1.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise UsageError("hydra/launcher=ray needs Ray: pip install -e '.[ray]' (make setup installs it)") from None
    if not ray.is_initialized():
        ray.init(address=address, logging_level=logging.WARNING)
    return ray


def ipaddress_is_loopback(host: str) -> bool:
    import ipaddress

    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _asked(options: dict[str, Any]) -> dict[str, float]:
    """The options as Ray's resource names."""
    asked = {"CPU": options.get("num_cpus") or 0, "GPU": options.get("num_gpus") or 0, **options.get("resources", {})}
    return {name: float(amount) for name, amount in asked.items() if amount}


def check_feasible(asked: dict[str, float], nodes: list[dict], job: str) -> None:
    """A job no node can hold would wait forever (Ray only warns): refuse it before anything runs."""
    alive = [node.get("Resources", {}) for node in nodes if node.get("Alive")]
    if any(all(have.get(name, 0) >= amount for name, amount in asked.items()) for have in alive):
        return
    biggest = max(alive, key=lambda have: (have.get("GPU", 0), have.get("CPU", 0)), default={})
    shown = {k: v for k, v in biggest.items() if k in ("CPU", "GPU", VGPU_RESOURCE) or k in asked}
    raise UsageError(
        f"{job} asks Ray for {asked}, and no node of the cluster has that much (the largest has {shown}); "
        f"start a node that has it (ray start --num-cpus/--num-gpus/--resources) or ask less (backend.threads, "
        f"hydra.launcher.remote.num_cpus=...)"
    )


def _prepare(launcher, overrides: Sequence[str], idx: int, extra: dict) -> tuple[DictConfig, dict]:
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"ray_{idx}"
        sweep_config.hydra.job.num = idx
    pin_to_head(sweep_config)
    return sweep_config, _options(sweep_config, extra)


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
    """Check that every job fits a node, submit them all, then wait: their JobReturns, in order."""
    from hydra.core.singleton import Singleton
    from hydra.core.utils import filter_overrides, setup_globals

    setup_globals()
    extra = OmegaConf.to_container(launcher.remote, resolve=True) if launcher.remote else {}
    try:
        ray = connect(launcher.address)
        jobs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            sweep_config, options = _prepare(launcher, overrides, idx, extra)
            name = f"job #{idx} ({' '.join(filter_overrides(overrides))})"
            check_feasible(_asked(options), ray.nodes(), name)
            jobs.append((name, sweep_config, options))
    except UsageError as exc:  # nothing was submitted
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    pending = []
    for name, sweep_config, options in jobs:
        print(f"ray: {name} asks {_asked(options)}", flush=True)
        task = ray.remote(max_retries=0, **options)(_run_job)
        pending.append(
            task.remote(
                hydra_context=launcher.hydra_context,
                sweep_config=sweep_config,
                task_function=launcher.task_function,
                singleton_state=Singleton.get_state(),
            )
        )
    return ray.get(pending)
