"""Joining or starting Ray: the embedded default on one machine, the same code on a cluster.

With no address (and no ``RAY_ADDRESS``, which ``ray job submit`` sets for its entrypoint) the program
starts a local Ray itself, dashboard bound to 127.0.0.1 so nothing listens on outside interfaces.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass


@dataclass
class RayConfig:
    address: str = ""              # "" = RAY_ADDRESS if set, else start a local Ray; "auto" = a running `ray start`
    num_cpus: int = 0              # local Ray only; 0 = all cores
    object_store_gb: float = 0.0   # local Ray only; 0 = Ray's default
    dashboard: bool = True         # local Ray only; always bound to 127.0.0.1
    # Ray Data's own per-operator progress and execution logs; off, the build prints one line per phase
    # (reelforge/progress.py) and a job log is not buried under a progress block every few seconds
    progress_bars: bool = False

    def __post_init__(self):
        if self.num_cpus < 0:
            raise ValueError(f"num_cpus must be >= 0, got {self.num_cpus}")
        if self.object_store_gb < 0:
            raise ValueError("object_store_gb must be >= 0")


# Set on every worker of our job. Ray leaves CUDA_VISIBLE_DEVICES alone for a task or actor that asked for
# no GPU, so a CPU actor on a GPU node would still see (and use, with `device: auto`) every GPU there,
# unreserved. With this, such a worker gets CUDA_VISIBLE_DEVICES="" and `auto`, resolved on the worker,
# means exactly "the GPUs this actor reserved" (num_gpus in its stage's config).
# Ray Train turns print() on its workers into a log record and, where the worker's stdout is not the
# original one (it never is under Ray), prints it as well: every trainer line came twice in the log.
WORKER_ENV = {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "1", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}

# Internal settings of a local Ray this program starts (never sent to a cluster it joins: a cluster's own
# `ray start` decides them). Every Ray process exports metrics for Prometheus and reports task events and
# its event-loop stats on timers, which nobody reads in an embedded Ray; on the 2-core machine that was
# ~0.09 s of CPU per second of wall time across gcs, raylet, agents and idle workers, ~0.05 s without
# (BENCHMARKS.md, issue 12). The dashboard's task view still fills, only less often.
LOCAL_SYSTEM_CONFIG = {
    "enable_metrics_collection": False,
    "metrics_report_interval_ms": 600_000,
    "task_events_report_interval_ms": 10_000,
    "event_stats": False,
}


def init_ray(cfg: RayConfig | None = None) -> str:
    """Connect to (or start) Ray once per process; returns 'cluster', 'local' or 'existing' (already up:
    nothing changed). Sets :data:`WORKER_ENV` on the job's workers and quiets Ray Data's progress output
    unless ``cfg.progress_bars``."""
    import ray

    cfg = cfg or RayConfig()
    if ray.is_initialized():
        return "existing"
    address = cfg.address or os.environ.get("RAY_ADDRESS", "")
    # our stages run their own code; Ray's per-task log echo only buries the progress bars
    common = dict(logging_level=logging.WARNING, log_to_driver=True, ignore_reinit_error=True,
                  runtime_env={"env_vars": WORKER_ENV})
    if address:
        ray.init(address=address, **common)
        mode = "cluster"
    else:
        kwargs = dict(include_dashboard=cfg.dashboard, dashboard_host="127.0.0.1",
                      _system_config=LOCAL_SYSTEM_CONFIG)
        # no usage report from an embedded Ray (its dashboard would otherwise collect and try to send one)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if cfg.num_cpus:
            kwargs["num_cpus"] = cfg.num_cpus
        if cfg.object_store_gb:
            kwargs["object_store_memory"] = int(cfg.object_store_gb * (1 << 30))
        # 5-40 s (a loaded machine) with nothing on the screen but Ray's token warning looked like a hang
        print("reelforge: starting a local Ray (RAY_ADDRESS joins a cluster instead) …", file=sys.stderr, flush=True)
        ray.init(**kwargs, **common)
        mode = "local"
    from ray.data import DataContext

    DataContext.get_current().execution_options.preserve_order = False
    quiet_ray_data(not cfg.progress_bars)
    return mode


def quiet_ray_data(quiet: bool = True) -> None:
    """Switch Ray Data's progress output on or off in this process (the driver, where it prints).

    Off means: no global or per-operator bars (in a non-tty Ray Data logs them as a block of lines
    every few seconds), no "Starting execution of Dataset" banner, and Ray Data's logger at ERROR (its
    INFO lines announce each execution, and with bars off it warns once that they are off)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = not quiet
    ctx.enable_operator_progress_bars = not quiet
    ctx.print_on_execution_start = not quiet
    level = logging.ERROR if quiet else logging.INFO
    logging.getLogger("ray.data").setLevel(level)


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
