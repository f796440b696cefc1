"""The experiment described by `params.yaml`: datasets, the paper's tables, the training grid.

    exp = load_experiment("params.yaml")
    check_raw_data(exp, "data/raw")        # enabled real datasets have their raw files, or a MicnError
    exp.samples_needed()                   # [(dataset, max_len), ...] for the samples stage
    plan_runs(exp)                         # [RunSpec, ...]: one per trained model, deduplicated

Sections used here:

    datasets:     name -> {enabled, max_len}; `synthetic` is written by the generate stage, every
                  other dataset is read from data/raw/<name>/ (Amazon 2014 or 2018 files)
    experiments:  name -> {enabled, backbones, variants, phis, max_lens}; the paper's Table 2
                  (backbones x ±MICN), Table 3 (φ sweep) and Table 4 (history length)
    grid:         seeds and how the runs are executed (retries, task runner, cluster address)

A run is identified by (dataset, max_len, backbone, variant, φ, seed); several experiments may
ask for the same run (e.g. DIEN+MICN at the default φ and length is in all three tables) and it
is trained once, remembering every experiment that asked for it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from micn.config import from_mapping, read_params
from micn.errors import MicnError
from micn.models import BACKBONES
from micn.models.micn_aux import MICNConfig
from micn.train import TrainConfig

SYNTHETIC = "synthetic"  # the dataset the generate stage writes to data/raw/synthetic
VARIANTS = ("base", "micn")
RUNNERS = ("auto", "thread", "dask", "ray")
ADDRESS_ENV = "MICN_GRID_ADDRESS"  # overrides grid.address (e.g. in a deployment's environment)
DOWNLOADS = (
    "the 2014 release (reviews_<Name>_5.json.gz + meta_<Name>.json.gz) from https://jmcauley.ucsd.edu/data/amazon/ "
    "or the 2018 release (<Name>_5.json.gz + meta_<Name>.json.gz) from https://nijianmo.github.io/amazon/"
)


@dataclass(frozen=True)
class DatasetSpec:
    enabled: bool = False
    max_len: int = 20  # history length of this dataset's main experiments (paper: 10 Electronics, 20 Books)

    def __post_init__(self) -> None:
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")


@dataclass(frozen=True)
class GenerateConfig:
    """The `generate` section: the built-in synthetic world (see `micn generate --help`)."""

    profile: str = "default"
    seed: int = 0
    format: str = "2014"  # raw file format of the Amazon release to imitate
    name: str | None = None  # category name in the file names (default: the profile's)

    def __post_init__(self) -> None:
        from micn.data.synthetic import PROFILES

        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        if self.format not in ("2014", "2018"):
            raise ValueError(f'format must be "2014" or "2018", got {self.format!r}')


@dataclass(frozen=True)
class SamplesConfig:
    """The `samples` section: how every enabled dataset's samples are built (max_len is per dataset)."""

    protocol: str = "dien"
    seed: int = 0
    valid_frac: float = 0.1
    test_frac: float = 0.1


@dataclass(frozen=True)
class ExperimentSpec:
    enabled: bool = False
    backbones: tuple[str, ...] = ("wide_deep", "din", "dien")
    variants: tuple[str, ...] = VARIANTS
    phis: tuple[float, ...] = ()  # φ values of the MICN runs; empty = micn.phi
    max_lens: tuple[int, ...] = ()  # history lengths; empty = each dataset's max_len

    def __post_init__(self) -> None:
        unknown = sorted(set(self.backbones) - set(BACKBONES))
        if unknown:
            raise ValueError(f"backbones: unknown {', '.join(unknown)}; choose from {', '.join(sorted(BACKBONES))}")
        if not self.backbones or not self.variants:
            raise ValueError("backbones and variants must not be empty")
        if set(self.variants) - set(VARIANTS):
            raise ValueError(f"variants must be among {', '.join(VARIANTS)}, got {list(self.variants)}")
        if any(not 0.0 <= p <= 1.0 for p in self.phis):
            raise ValueError(f"phis must lie in [0, 1], got {list(self.phis)}")
        if any(n < 1 for n in self.max_lens):
            raise ValueError(f"max_lens must be >= 1, got {list(self.max_lens)}")


@dataclass(frozen=True)
class GridConfig:
    seeds: tuple[int, ...] = (1, 2, 3)
    retries: int = 1  # Prefect task retries of a failed run before it is recorded as failed
    retry_delay_s: float = 2.0
    runner: str = "auto"  # auto: dask/ray when an address is set (by scheme), else threads
    max_workers: int = 2  # runs in parallel with the thread runner
    address: str | None = None  # tcp://host:8786 (Dask) or ray://host:10001 (Ray); env MICN_GRID_ADDRESS wins
    connect_timeout_s: float = 10.0  # how long to wait for the cluster before giving up

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds must list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {list(self.seeds)}")
        if self.retries < 0 or self.retry_delay_s < 0:
            raise ValueError("retries and retry_delay_s must be >= 0")
        if self.runner not in RUNNERS:
            raise ValueError(f"runner must be one of {', '.join(RUNNERS)}, got {self.runner!r}")
        if self.max_workers < 1 or self.connect_timeout_s <= 0:
            raise ValueError("max_workers must be >= 1 and connect_timeout_s > 0")

    def resolved(self) -> tuple[str, str | None]:
        """(runner, address) after the environment override and `auto`."""
        address = os.environ.get(ADDRESS_ENV) or self.address
        runner = self.runner
        if runner == "auto":
            runner = "thread" if not address else ("ray" if address.startswith("ray://") else "dask")
        if runner in ("dask", "ray") and not address:
            raise MicnError(f"grid.runner is {runner} but no cluster address is set (grid.address or ${ADDRESS_ENV}).")
        return runner, address


@dataclass(frozen=True)
class RunSpec:
    """One trained model of the grid."""

    dataset: str
    backbone: str
    variant: str
    max_len: int
    phi: float | None  # None for base runs (no MICN)
    seed: int
    experiments: tuple[str, ...] = field(default=(), compare=False)

    @property
    def key(self) -> tuple:
        return (self.dataset, self.max_len, self.backbone, self.variant, self.phi, self.seed)

    @property
    def run_id(self) -> str:
        """`<dataset>/<backbone>-<variant>[-phi<φ>]-len<L>-seed<s>`: file names and the `runs` table's key."""
        phi = "" if self.phi is None else f"-phi{self.phi:g}"
        return f"{self.dataset}/{self.backbone}-{self.variant}{phi}-len{self.max_len}-seed{self.seed}"

    def samples_dir(self, root: Path) -> Path:
        return samples_dir(root, self.dataset, self.max_len)

    def model_dir(self, root: Path) -> Path:
        return root / "models" / self.run_id

    def metrics_path(self, root: Path) -> Path:
        return root / "metrics" / "runs" / f"{self.run_id}.json"

    def history_path(self, root: Path) -> Path:
        return root / "metrics" / "history" / f"{self.run_id}.json"


def samples_dir(root: Path, dataset: str, max_len: int) -> Path:
    return Path(root) / "data" / "samples" / dataset / f"len{max_len}"


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
        return [name for name, d in self.datasets.items() if d.enabled]

    def max_lens(self, dataset: str, exp: ExperimentSpec) -> tuple[int, ...]:
        return exp.max_lens or (self.datasets[dataset].max_len,)

    def samples_needed(self) -> list[tuple[str, int]]:
        """(dataset, max_len) pairs the enabled experiments train on, in a stable order."""
        need = {(d, n) for d in self.enabled_datasets for e in self.experiments.values() if e.enabled
                for n in self.max_lens(d, e)}
        return sorted(need)


def load_experiment(path: str | Path = "params.yaml") -> Experiment:
    """Parse and check the experiment sections; any bad key or value is a MicnError naming it."""
    data = read_params(path)
    where = str(path)
    datasets = _named(data, "datasets", DatasetSpec, where)
    experiments = _named(data, "experiments", ExperimentSpec, where)
    if not any(d.enabled for d in datasets.values()):
        raise MicnError(f"{where}: datasets: no dataset is enabled; set `enabled: true` on one of "
                        f"{', '.join(datasets)}.")
    if not any(e.enabled for e in experiments.values()):
        raise MicnError(f"{where}: experiments: none is enabled; set `enabled: true` on one of "
                        f"{', '.join(experiments)}.")
    for name in datasets:
        if not name.replace("_", "").replace("-", "").isalnum():
            raise MicnError(f"{where}: datasets.{name}: a dataset name may hold letters, digits, '-' and '_' only.")
    return Experiment(
        datasets=datasets,
        experiments=experiments,
        grid=from_mapping(GridConfig, data.get("grid") or {}, f"{where}: grid"),
        train=from_mapping(TrainConfig, data.get("train") or {}, f"{where}: train"),
        micn=from_mapping(MICNConfig, data.get("micn") or {}, f"{where}: micn"),
        samples=from_mapping(SamplesConfig, data.get("samples") or {}, f"{where}: samples"),
        path=where,
    )


def _named(data: dict, section: str, cls, where: str) -> dict:
    values = data.get(section)
    if not isinstance(values, dict) or not values:
        raise MicnError(f"{where}: {section}: expected a mapping of name -> settings, got {values!r}.")
    return {str(name): from_mapping(cls, spec or {}, f"{where}: {section}.{name}") for name, spec in values.items()}


def plan_runs(exp: Experiment) -> list[RunSpec]:
    """Every run the enabled experiments ask for, once, in a stable order (dataset, length, backbone, ...)."""
    asked: dict[tuple, set[str]] = {}
    specs: dict[tuple, RunSpec] = {}
    for dataset in exp.enabled_datasets:
        for name, e in exp.experiments.items():
            if not e.enabled:
                continue
            for max_len in exp.max_lens(dataset, e):
                for backbone in e.backbones:
                    for variant in e.variants:
                        phis = (None,) if variant == "base" else (e.phis or (exp.micn.phi,))
                        for phi in phis:
                            for seed in exp.grid.seeds:
                                spec = RunSpec(dataset, backbone, variant, max_len, phi, seed)
                                specs.setdefault(spec.key, spec)
                                asked.setdefault(spec.key, set()).add(name)
    order = sorted(specs, key=lambda k: (k[0], k[1], k[2], k[3], -1.0 if k[4] is None else k[4], k[5]))
    return [dataclasses.replace(specs[k], experiments=tuple(sorted(asked[k]))) for k in order]


def micn_config(exp: Experiment, spec: RunSpec) -> MICNConfig | None:
    """The MICN settings of a run (None for base runs): the `micn` section with the run's φ."""
    if spec.variant == "base":
        return None
    return dataclasses.replace(exp.micn, enabled=True, phi=spec.phi)


def raw_files(raw_dir: Path) -> tuple[list[Path], list[Path]]:
    """(review files, metadata files) in a dataset's raw folder, by the Amazon releases' names."""
    reviews = sorted(p for p in raw_dir.glob("*_5.json*") if p.is_file())
    meta = sorted(p for p in raw_dir.glob("meta_*.json*") if p.is_file())
    return reviews, meta


def check_raw_data(exp: Experiment, raw_root: str | Path = "data/raw") -> None:
    """Every enabled dataset but `synthetic` must have its review and metadata files in raw_root/<name>/."""
    problems = []
    for name in exp.enabled_datasets:
        if name == SYNTHETIC:
            continue
        folder = Path(raw_root) / name
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
