"""Prefect wiring for `micn train`: one backbone, one seed, one dataset's samples."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from micn.models.micn_aux import MICNConfig
from micn.train import TrainConfig, train


@task(cache_policy=NO_CACHE)
def fit(samples: str, backbone: str, out: str, seed: int, cfg: TrainConfig, micn: MICNConfig | None,
        dataset: str) -> dict:
    return train(samples, backbone, out, seed=seed, cfg=cfg, micn=micn, dataset=dataset, progress=True)


@flow(name="train")
def train_flow(dataset: str, samples: str, backbone: str, seed: int, out: str, cfg: TrainConfig,
               micn: MICNConfig | None = None) -> dict:
    result = fit(samples, backbone, out, seed, cfg, micn, dataset)
    m = result["metrics"]
    get_run_logger().info(
        "%s %s (%s) seed %d: test AUC %.4f, GAUC %.4f, logloss %.4f (oracle %s), %d epochs, %.0f samples/s",
        dataset, backbone, result["variant"], seed, m["auc"], m["gauc"], m["logloss"],
        "n/a" if m.get("oracle_auc") is None else f"{m['oracle_auc']:.4f}", result["epochs"], result["samples_per_s"],
    )
    return result
