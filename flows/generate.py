"""Prefect wiring for `micn generate`: the synthetic Amazon world (DESIGN §3.4)."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from micn.data.synthetic import WorldSummary, generate_world


@task(cache_policy=NO_CACHE)
def write_world(profile: str, out: str, seed: int, fmt: str, name: str | None) -> WorldSummary:
    return generate_world(profile, out, seed=seed, fmt=fmt, name=name)


@flow(name="generate")
def generate_flow(profile: str, out: str, seed: int = 0, fmt: str = "2014", name: str | None = None) -> WorldSummary:
    summary = write_world(profile, out, seed, fmt, name)
    get_run_logger().info("synthetic world %r (seed %d, format %s) written to %s", profile, seed, fmt, out)
    return summary
