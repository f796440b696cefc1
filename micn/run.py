"""What one training run is: its settings, its files, its model and its record.

    run = RunConfig(backbone="din", variant="micn", seed=1, train=TrainConfig(), micn=MICNConfig())
    paths = RunPaths(samples_dir, out_dir)
    fmap, splits = load_splits(paths.samples_dir, run.dataset)
    model = build_model(run.backbone, fmap, run.train, run.micn_config, variant=run.variant)

`micn.train.train(run, paths)` trains it; this module holds everything about a run that is not the
optimisation itself: which model a variant builds, the signature a checkpoint must share to be
resumed, and the run record written at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from micn.config import SEED_MAX, MICNConfig, TrainConfig
from micn.data.dataset import SampleSet
from micn.data.feature_map import FeatureMap, load_feature_map
from micn.errors import MicnError
from micn.models import BACKBONES, DIENConfig, build_backbone
from micn.models.base import CTRModel
from micn.models.with_micn import build_control, build_with_micn
from micn.names import ABLATIONS, SPLITS, VARIANTS
from micn.nn.embedding import ItemEmbedding
from micn.checkpoint import load_tensors
from micn.record import GridInfo, RunRecord, TrainingState, make_record, os_reason, plain_config, read_record


@dataclass(frozen=True)
class RunConfig:
    """What one run trains: the backbone, the variant ("base" | "control" | "micn"), the seed and its settings.

    `micn` holds MICN's settings; a "micn" run uses all of them, a "control" run its width
    `d_aux` and `phi`, a "base" run none (`micn_config`)."""

    backbone: str
    variant: str
    seed: int
    train: TrainConfig = field(default_factory=TrainConfig)
    micn: MICNConfig = field(default_factory=MICNConfig)
    dataset: str | None = None  # when given, must match the samples' feature map
    ablation: str | None = None  # an information ablation of the model's inputs (micn.names.ABLATIONS), base runs only

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise MicnError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(sorted(BACKBONES))}.")
        if self.variant not in VARIANTS:
            raise MicnError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)} "
                            "(micn adds the MICN auxiliary task; control the same width without it).")
        if self.ablation is not None and (self.ablation not in ABLATIONS or self.variant != "base"):
            raise MicnError(f"ablation {self.ablation!r}: choose one of {', '.join(ABLATIONS)}, on a base run "
                            f"(got variant {self.variant!r}).")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= SEED_MAX:
            raise MicnError(f"seed must be an integer in [0, {SEED_MAX}] (a signed 64-bit seed), got {self.seed!r}.")

    @property
    def micn_config(self) -> MICNConfig | None:
        """MICN's settings for a "micn" or "control" run (recorded in its params), None for "base"."""
        return None if self.variant == "base" else self.micn

    @property
    def has_micn(self) -> bool:
        """Whether the run trains MICN's capsule network and L_micn (variant "micn" only)."""
        return self.variant == "micn"


@dataclass(frozen=True)
class RunPaths:
    """Where a run reads its samples and writes its files (record and history default into `out_dir`)."""

    samples_dir: Path
    out_dir: Path
    record: Path | None = None  # default out_dir/metrics.json
    history: Path | None = None  # default out_dir/history.json

    def __post_init__(self) -> None:
        for name in ("samples_dir", "out_dir", "record", "history"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))

    @property
    def record_path(self) -> Path:
        return self.record or self.out_dir / "metrics.json"

    @property
    def history_path(self) -> Path:
        return self.history or self.out_dir / "history.json"

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    @property
    def model(self) -> Path:
        return self.out_dir / "model.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MicnError("device: cuda was asked for but torch sees no CUDA device; use device: auto or cpu.")
    return torch.device(name)


def load_splits(samples_dir: str | Path, dataset: str | None = None) -> tuple[FeatureMap, dict[str, SampleSet]]:
    """The feature map and the three splits, checked against each other and the dataset name."""
    samples_dir = Path(samples_dir)
    if not samples_dir.is_dir():
        raise MicnError(f"{samples_dir}: no such samples directory; build it with `micn samples --out {samples_dir}`.")
    fmap = load_feature_map(samples_dir)
    if dataset is not None and fmap.dataset != dataset:
        raise MicnError(f"{samples_dir}/feature_map.json is for dataset {fmap.dataset!r}, not {dataset!r}; "
                        "pass the matching --samples directory.")
    return fmap, {s: SampleSet.from_parquet(samples_dir / f"{s}.parquet", fmap) for s in SPLITS}


def build_model(backbone: str, fmap: FeatureMap, cfg: TrainConfig, micn: MICNConfig | None = None,
                item_categories: torch.Tensor | None = None, generator: torch.Generator | None = None,
                variant: str | None = None) -> CTRModel:
    """Item embedding (item ⊕ category) built here and injected into the backbone. With a MICN
    config (variant "micn") the injected embedding is e_orig ⊕ e_aux, the model also returns
    L_micn, and MICN draws its training-time randomness from `generator`. Variant "control"
    (needs the MICN config for d_aux and φ) is the same joined width with e_ctrl in place of
    e_aux, trained by the main loss only (`micn.models.with_micn.build_control`).

    `variant` defaults to "micn" when a MICN config is given, else "base"."""
    variant = variant or ("base" if micn is None else "micn")
    backbone_cfg = backbone_config(backbone, cfg)
    if variant == "control":
        if micn is None:
            raise MicnError("variant control needs the micn section (d_aux, phi) for the width of its extra half.")
        return build_control(backbone, fmap.n_users, fmap.n_items, fmap.n_categories, cfg.d_item,
                             cfg.d_category, micn, backbone_cfg=backbone_cfg)
    if variant == "micn":
        return build_with_micn(backbone, fmap.n_users, fmap.n_items, fmap.n_categories, cfg.d_item,
                               cfg.d_category, micn, backbone_cfg=backbone_cfg, item_categories=item_categories,
                               generator=generator)
    embedding = ItemEmbedding(fmap.n_items, fmap.n_categories, cfg.d_item, cfg.d_category)
    return build_backbone(backbone, backbone_cfg, embedding, fmap.n_users)


def backbone_config(backbone: str, cfg: TrainConfig) -> DIENConfig | None:
    """The backbone's config where the train section changes it (DIEN's aux activation), else None:
    the backbone's own defaults."""
    if backbone == "dien" and cfg.dien_aux_activation != "sigmoid":
        return DIENConfig(aux_activation=cfg.dien_aux_activation)
    return None


def signature(run: RunConfig, fmap: FeatureMap, grid: GridInfo | None) -> str:
    """Hash of everything a checkpoint must share with this run to be resumed by it."""
    micn = run.micn_config
    inputs = {"backbone": run.backbone, "variant": run.variant, "seed": run.seed, "config": dataclasses.asdict(run.train),
              "micn": None if micn is None else dataclasses.asdict(micn), "ablation": run.ablation,
              "samples": fmap.identity(),
              "run": grid.signature if grid else None}  # the grid's hash of code + samples + settings
    return hashlib.blake2b(json.dumps(inputs, sort_keys=True).encode(), digest_size=16).hexdigest()


def warmup_steps(cfg: TrainConfig, data: SampleSet, has_micn: bool) -> int:
    """Optimizer steps of the MICN-only warm-up (0 for base and control runs), checked to leave
    selectable steps in the budget."""
    if not has_micn or cfg.micn_warmup_epochs == 0:
        return 0
    per_epoch = data.num_batches(cfg.batch_size)
    steps = round(cfg.micn_warmup_epochs * per_epoch)
    if steps >= cfg.epochs * per_epoch:
        raise MicnError(f"train.micn_warmup_epochs = {cfg.micn_warmup_epochs:g} leaves no step of the "
                        f"{cfg.epochs} epochs (train.epochs) for joint training; make it smaller than train.epochs.")
    return steps


def world_kappa(fmap: FeatureMap, samples_dir: Path) -> float | None:
    """The interest signal κ of the synthetic world behind these samples (its `world.json`, copied
    into the samples' `oracle/`; a world written without the key has κ = 1); None on real data."""
    if fmap.oracle is None:
        return None
    path = Path(samples_dir) / fmap.oracle / "world.json"
    try:
        kappa = json.loads(path.read_text()).get("profile_params", {}).get("kappa", 1.0)
    except (OSError, ValueError, AttributeError) as e:
        raise MicnError(f"{path}: cannot read the synthetic world's summary ({e}); rebuild the samples.") from None
    if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not 0.0 <= kappa <= 1.0:
        raise MicnError(f"{path}: profile_params.kappa = {kappa!r} is not a number in [0, 1]; rebuild the samples.")
    return float(kappa)


def run_record(run: RunConfig, paths: RunPaths, fmap: FeatureMap, grid: GridInfo | None, state: TrainingState,
               metrics: dict, device: str, started: datetime) -> RunRecord:
    """The run record of a finished run (status ok)."""
    micn, history = run.micn_config, state.history
    seconds = sum(r["seconds"] for r in history)
    return make_record(
        paths.record_path,
        run_id=grid.run_id if grid else None,
        dataset=fmap.dataset,
        protocol=fmap.protocol,
        backbone=run.backbone,
        variant=run.variant,
        seed=run.seed,
        max_len=grid.max_len if grid else fmap.max_len,
        phi=grid.phi if grid else (None if micn is None else micn.phi),
        experiments=list(grid.experiments) if grid else [],
        status="ok",
        error=None,
        traceback=None,
        attempts=grid.attempt if grid else 1,
        signature=grid.signature if grid else None,
        params={"train": plain_config(run.train), "micn": plain_config(micn), "max_len": fmap.max_len,
                "samples_seed": fmap.seed},
        metrics=metrics,
        epochs=state.epoch,
        best_epoch=state.best_epoch,
        best_step=state.best_step,
        train_seconds=round(seconds, 3),
        samples_per_s=round(sum(r["samples"] for r in history) / max(seconds, 1e-9), 1),
        device=device,
        git_revision=_git_revision(),
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        kappa=world_kappa(fmap, paths.samples_dir),
        ablation=run.ablation,
        supervision=run.micn.supervision if run.has_micn else None,
    )


def other_run(paths: RunPaths, run: RunConfig, fmap: FeatureMap) -> str | None:
    """What `paths` hold of ANOTHER run, in words (None when they hold nothing, or this run's own
    files: its record, or a checkpoint it resumes from). Guards `micn train --out` against writing
    over another run's results; the grid names its folders by run and does not need it."""
    if paths.record_path.is_file():
        try:
            record = read_record(paths.record_path)
        except MicnError:
            return f"a file {paths.record_path.name} that is not a run record"
        mine = (fmap.dataset, run.backbone, run.variant, run.seed, plain_config(run.train), plain_config(run.micn_config))
        theirs = (record.dataset, record.backbone, record.variant, record.seed, record.params.get("train"),
                  record.params.get("micn"))
        if mine != theirs:
            return (f"the results of another run ({record.backbone} {record.variant} seed {record.seed} on "
                    f"{record.dataset}, or the same with other settings)")
    if paths.checkpoint.is_file():
        state = load_tensors(paths.checkpoint, "checkpoint").get("state")
        if not isinstance(state, dict) or state.get("signature") != signature(run, fmap, None):
            return "the checkpoint of another run (other settings, seed or samples)"
    return None


def make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MicnError(f"{path}: cannot create the run directory ({os_reason(e)}).") from None


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
