"""The experiment described by `params.yaml`: datasets, the paper's tables, the training grid.

    exp = load_experiment("params.yaml")
    check_raw_data(exp, "data/raw")        # enabled real datasets have their raw files, or a MicnError
    exp.samples_needed()                   # [(dataset, max_len), ...] for the samples stage
    plan_runs(exp)                         # [RunSpec, ...]: one per trained model, deduplicated

Sections used here:

    datasets:     name -> {enabled, max_len}; `synthetic` is written by the generate stage, every
                  other dataset is read from data/raw/<name>/ (Amazon 2014 or 2018 files)
    experiments:  name -> {enabled, backbones, variants, phis, control_phis, max_lens}; the paper's
                  Table 2 (backbones x base/control/micn), Table 3 (φ sweep) and Table 4 (history length)
    grid:         seeds and how the runs are executed (retries, task runner, cluster address)

A run is identified by (dataset, max_len, backbone, variant, φ, seed); several experiments may
ask for the same run (e.g. DIEN+MICN at the default φ and length is in all three tables) and it
is trained once, remembering every experiment that asked for it. Variants: `base` (the backbone),
`micn` (with the MICN auxiliary task) and `control` (the backbone with the same joined width,
its extra half e_ctrl trained by the main loss only, scaled by φ: MICN without L_micn). Control
and micn runs carry φ; base runs do not.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from micn.config import DatasetSpec, ExperimentSpec, GridConfig, MICNConfig, SamplesConfig, TrainConfig, load_params
from micn.data.layout import SYNTHETIC, is_synthetic, kappa_dataset, raw_dir, samples_dir
from micn.errors import MicnError
DOWNLOADS = (
    "the 2014 release (reviews_<Name>_5.json.gz + meta_<Name>.json.gz) from https://jmcauley.ucsd.edu/data/amazon/ "
    "or the 2018 release (<Name>_5.json.gz + meta_<Name>.json.gz) from https://nijianmo.github.io/amazon/"
)


@dataclass(frozen=True)
class RunSpec:
    """One trained model of the grid."""

    dataset: str
    backbone: str
    variant: str
    max_len: int
    phi: float | None  # None for base runs; control runs carry φ like micn runs (the scale of e_ctrl's gradient)
    seed: int
    experiments: tuple[str, ...] = field(default=(), compare=False)
    ablation: str | None = None  # an information ablation of the inputs (base runs of the mechanism experiment)
    supervision: str | None = None  # what L_micn predicts (micn runs: micn.names.SUPERVISIONS), None otherwise

    @property
    def key(self) -> tuple:
        return (self.dataset, self.max_len, self.backbone, self.variant, self.phi, self.seed, self.ablation or "",
                self.supervision or "")

    @property
    def run_id(self) -> str:
        """`<dataset>/<backbone>-<variant>[-<ablation>][-history][-phi<φ>]-len<L>-seed<s>`: file names and the
        `runs` table's key. The paper's supervision (`target`) adds nothing, `history` adds `-history`."""
        phi = "" if self.phi is None else f"-phi{self.phi:g}"
        ablation = "" if self.ablation is None else f"-{self.ablation}"
        supervision = "-history" if self.supervision == "history" else ""
        return (f"{self.dataset}/{self.backbone}-{self.variant}{ablation}{supervision}{phi}-len{self.max_len}"
                f"-seed{self.seed}")

    def samples_dir(self, root: Path) -> Path:
        return samples_dir(root, self.dataset, self.max_len)

    def model_dir(self, root: Path) -> Path:
        return root / "models" / self.run_id

    def metrics_path(self, root: Path) -> Path:
        return root / "metrics" / "runs" / f"{self.run_id}.json"

    def history_path(self, root: Path) -> Path:
        return root / "metrics" / "history" / f"{self.run_id}.json"


@dataclass(frozen=True)
class Experiment:
    datasets: dict[str, DatasetSpec]
    experiments: dict[str, ExperimentSpec]
    grid: GridConfig
    train: TrainConfig
    micn: MICNConfig
    samples: SamplesConfig = SamplesConfig()
    path: str = "params.yaml"

    @property
    def enabled_datasets(self) -> list[str]:
        """The `datasets` section's enabled datasets (what Tables 2-4 train on)."""
        return [name for name, d in self.datasets.items() if d.enabled]

    def datasets_of(self, e: ExperimentSpec) -> list[str]:
        """The datasets one experiment trains on: its κ worlds (the mechanism experiment), else the enabled ones."""
        return [kappa_dataset(k) for k in e.kappas] if e.kappas else self.enabled_datasets

    @property
    def all_datasets(self) -> list[str]:
        """Every dataset an enabled experiment trains on, each once (what ingest and samples build)."""
        names = [d for e in self.experiments.values() if e.enabled for d in self.datasets_of(e)]
        return list(dict.fromkeys(self.enabled_datasets + names))

    def kappa_worlds(self) -> list[tuple[str, float]]:
        """(dataset, κ) of every κ < 1 world an enabled experiment needs (the generate stage writes them)."""
        worlds = {kappa_dataset(k): k for e in self.experiments.values() if e.enabled for k in e.kappas if k != 1.0}
        return sorted(worlds.items(), key=lambda w: -w[1])

    def max_lens(self, dataset: str, exp: ExperimentSpec) -> tuple[int, ...]:
        spec = self.datasets[SYNTHETIC if is_synthetic(dataset) and dataset not in self.datasets else dataset]
        return exp.max_lens or (spec.max_len,)

    def samples_needed(self) -> list[tuple[str, int]]:
        """(dataset, max_len) pairs the enabled experiments train on, in a stable order."""
        need = {(d, n) for e in self.experiments.values() if e.enabled for d in self.datasets_of(e)
                for n in self.max_lens(d, e)}
        return sorted(need)


def load_experiment(path: str | Path = "params.yaml") -> Experiment:
    """Parse and check every section; any bad key or value is a MicnError naming it."""
    params = load_params(path)
    where = str(path)
    if not any(d.enabled for d in params.datasets.values()):
        raise MicnError(f"{where}: datasets: no dataset is enabled; set `enabled: true` on one of "
                        f"{', '.join(params.datasets) or 'the datasets (none is listed)'}.")
    if not any(e.enabled for e in params.experiments.values()):
        raise MicnError(f"{where}: experiments: none is enabled; set `enabled: true` on one of "
                        f"{', '.join(params.experiments) or 'the experiments (none is listed)'}.")
    sweeps = [name for name, e in params.experiments.items() if e.enabled and e.kappas]
    if sweeps and SYNTHETIC not in params.datasets:
        raise MicnError(f"{where}: experiments.{sweeps[0]} sweeps κ over synthetic worlds, whose max_len is "
                        f"datasets.{SYNTHETIC}.max_len; add a `{SYNTHETIC}` entry to the datasets section.")
    if sweeps and params.generate.kappa not in (None, 1.0):
        raise MicnError(f"{where}: experiments.{sweeps[0]} compares worlds with the default world (κ = 1), but "
                        f"generate.kappa is {params.generate.kappa}; leave generate.kappa unset for the sweep.")
    return Experiment(datasets=params.datasets, experiments=params.experiments, grid=params.grid,
                      train=params.train, micn=params.micn, samples=params.samples, path=where)


def plan_runs(exp: Experiment) -> list[RunSpec]:
    """Every run the enabled experiments ask for, once, in a stable order (dataset, length, backbone, ...)."""
    asked: dict[tuple, set[str]] = {}
    specs: dict[tuple, RunSpec] = {}
    for name, e in exp.experiments.items():
        if not e.enabled:
            continue
        for dataset in exp.datasets_of(e):
            for max_len in exp.max_lens(dataset, e):
                for spec in _cells(exp, e, dataset, max_len):
                    specs.setdefault(spec.key, spec)
                    asked.setdefault(spec.key, set()).add(name)
    order = sorted(specs, key=lambda k: (k[0], k[1], k[2], k[3], k[6], k[7], -1.0 if k[4] is None else k[4], k[5]))
    return [dataclasses.replace(specs[k], experiments=tuple(sorted(asked[k]))) for k in order]


def train_config(exp: Experiment, spec: RunSpec) -> TrainConfig:
    """The training settings of a run: the `train` section, with the MICN-only warm-up set to 0
    for base and control runs (it applies to micn runs only), so that changing it retrains, and
    records as changed, only the micn runs."""
    if spec.variant == "micn" or exp.train.micn_warmup_epochs == 0:
        return exp.train
    return dataclasses.replace(exp.train, micn_warmup_epochs=0.0)


def _cells(exp: Experiment, e: ExperimentSpec, dataset: str, max_len: int):
    """The runs of one experiment on one dataset and length: backbones x variants x φ x supervision
    (micn runs) x seeds, then the information ablations of the ablated backbones' base runs."""
    for backbone in e.backbones:
        for variant in e.variants:
            phis = e.phis if variant != "control" or e.control_phis is None else e.control_phis
            phis = (None,) if variant == "base" else (phis or (exp.micn.phi,))
            supervisions = (e.supervisions or (exp.micn.supervision,)) if variant == "micn" else (None,)
            if e.supervision_backbones and backbone not in e.supervision_backbones:
                supervisions = supervisions[:1]
            for phi in phis:
                for supervision in supervisions:
                    for seed in e.backbone_seeds.get(backbone, exp.grid.seeds):
                        yield RunSpec(dataset, backbone, variant, max_len, phi, seed, supervision=supervision)
    for backbone in e.ablation_backbones if e.ablations else ():
        for ablation in e.ablations:
            for seed in e.backbone_seeds.get(backbone, exp.grid.seeds):
                yield RunSpec(dataset, backbone, "base", max_len, None, seed, ablation=ablation)


def micn_config(exp: Experiment, spec: RunSpec) -> MICNConfig | None:
    """The MICN settings of a run (None for base runs): the `micn` section with the run's φ (and,
    for a micn run, its supervision).

    A control run gets them too: its extra half is as wide as e_aux (`d_aux`) and receives the
    main gradient scaled by the same φ, so control and micn at one φ differ only by L_micn."""
    if spec.variant == "base":
        return None
    return dataclasses.replace(exp.micn, phi=spec.phi, supervision=spec.supervision or exp.micn.supervision)


def raw_files(raw_dir: Path) -> tuple[list[Path], list[Path]]:
    """(review files, metadata files) in a dataset's raw folder, by the Amazon releases' names."""
    reviews = sorted(p for p in raw_dir.glob("*_5.json*") if p.is_file())
    meta = sorted(p for p in raw_dir.glob("meta_*.json*") if p.is_file())
    return reviews, meta


def check_raw_data(exp: Experiment, raw_root: str | Path = "data/raw") -> None:
    """Every enabled dataset but `synthetic` must have its review and metadata files in raw_root/<name>/."""
    problems = []
    for name in exp.all_datasets:
        if is_synthetic(name):
            continue
        folder = raw_dir(raw_root, name)
        reviews, meta = raw_files(folder)
        if reviews and meta:
            continue
        title = name.replace("_", " ").title().replace(" ", "_")
        missing = [] if reviews else [f"{folder}/reviews_{title}_5.json.gz (2014) or {folder}/{title}_5.json.gz (2018)"]
        missing += [] if meta else [f"{folder}/meta_{title}.json.gz"]
        problems.append(f"datasets.{name} is enabled but {' and '.join(missing)} "
                        f"{'is' if len(missing) == 1 else 'are'} missing")
    if problems:
        raise MicnError(f"{exp.path}: {'; '.join(problems)}. Download {DOWNLOADS}, put the files in "
                        f"{raw_root}/<dataset>/ and version them with `dvc add {raw_root}/<dataset>`; or set "
                        "`enabled: false` for that dataset.")
