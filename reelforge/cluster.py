"""Joining or starting Ray: the embedded default on one machine, the same code on a cluster.

With no address (and no ``RAY_ADDRESS``, which ``ray job submit`` sets for its entrypoint) the program
starts a local Ray itself, dashboard bound to 127.0.0.1 so nothing listens on outside interfaces.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass


@dataclass
class RayConfig:
    address: str = ""              # "" = RAY_ADDRESS if set, else start a local Ray; "auto" = a running `ray start`
    num_cpus: int = 0              # local Ray only; 0 = all cores
    object_store_gb: float = 0.0   # local Ray only; 0 = Ray's default
    dashboard: bool = True         # local Ray only; always bound to 127.0.0.1
    progress_bars: bool = True

    def __post_init__(self):
        if self.num_cpus < 0:
            raise ValueError(f"num_cpus must be >= 0, got {self.num_cpus}")
        if self.object_store_gb < 0:
            raise ValueError("object_store_gb must be >= 0")


def init_ray(cfg: RayConfig | None = None) -> str:
    """Connect to (or start) Ray once per process; returns 'cluster' or 'local'."""
    import ray

    cfg = cfg or RayConfig()
    if ray.is_initialized():
        return "existing"
    address = cfg.address or os.environ.get("RAY_ADDRESS", "")
    # our stages run their own code; Ray's per-task log echo only buries the progress bars
    common = dict(logging_level=logging.WARNING, log_to_driver=True, ignore_reinit_error=True)
    if address:
        ray.init(address=address, **common)
        mode = "cluster"
    else:
        kwargs = dict(include_dashboard=cfg.dashboard, dashboard_host="127.0.0.1")
        if cfg.num_cpus:
            kwargs["num_cpus"] = cfg.num_cpus
        if cfg.object_store_gb:
            kwargs["object_store_memory"] = int(cfg.object_store_gb * (1 << 30))
        ray.init(**kwargs, **common)
        mode = "local"
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = cfg.progress_bars
    ctx.execution_options.preserve_order = False
    return mode


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
