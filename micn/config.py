"""`params.yaml` → one validated, frozen type per section. Reading it imports no torch.

    params = load_params("params.yaml")            # every section, every bad key named in one error
    cfg = load_section("params.yaml", "train", TrainConfig)   # one section (DVC stages read their own)

Each section type is a pydantic dataclass (`validated`): `dataclasses.asdict`, `replace` and
`fields` work on it like on a stdlib dataclass, while pydantic checks types strictly (no "1" for
1, no `true` for 1), ranges, finite numbers and unknown keys, and reports every bad key of a call
at once. `replace` re-validates. Why pydantic and not hand-written checks: it is installed with
Prefect and collects all errors of a file in one pass, where per-key checks stop at the first.

The file itself is read with a SafeLoader that refuses duplicate keys (YAML silently keeps the
last one) and only the sections in `SECTIONS` are allowed, so a misspelt `trian:` is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import ConfigDict, Field, Strict, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from micn.errors import MicnError
from micn.names import ABLATIONS, BACKBONE_NAMES, FORMATS, PROFILE_NAMES, PROTOCOLS, SUPERVISIONS, VARIANTS

T = TypeVar("T")

SECTIONS = ("generate", "datasets", "samples", "experiments", "grid", "train", "micn")
SEED_MAX = 2**63 - 1  # seeds feed numpy/torch/DuckDB generators, which take signed 64-bit integers
RUNNERS = ("auto", "thread", "dask")  # how the grid runs: local threads, or a Dask cluster
SAMPLERS = ("log_uniform", "uniform")
ADDRESS_ENV = "MICN_GRID_ADDRESS"  # overrides grid.address (e.g. in a deployment's environment)

# Strict scalars: YAML `"3"` is not 3 and `true` is not 1; an int is accepted for a float.
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
Seed = Annotated[int, Strict(), Field(ge=0, le=SEED_MAX)]
Positive = Annotated[int, Strict(), Field(ge=1)]
NonNegative = Annotated[int, Strict(), Field(ge=0)]
Fraction = Annotated[float, Strict(), Field(gt=0.0, lt=1.0)]
Unit = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]

_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)


def validated(cls: type[T]) -> type[T]:
    """A frozen pydantic dataclass: extra keys forbidden, numbers finite, fields validated.

    The params sections, the feature map (`micn.data.feature_map`) and the run record
    (`micn.record`) are all such types, built through `from_mapping` so that every problem of a
    file is named in one error."""
    return _pydantic_dataclass(frozen=True, config=_CONFIG)(cls)


@validated
class GenerateConfig:
    """The `generate` section: the built-in synthetic world (see `micn generate --help`)."""

    profile: Literal[PROFILE_NAMES] = "default"
    seed: Seed = 0
    format: Literal[FORMATS] = "2014"  # raw file format of the Amazon release to imitate
    name: Str | None = None  # category name in the file names (default: the profile's)
    # κ, probability that an item serves its category's topic (else a topic drawn by popularity);
    # None = the profile's (1.0: the world without item-level interest signal, byte for byte)
    kappa: Unit | None = None


@validated
class DatasetSpec:
    """One entry of the `datasets` section."""

    enabled: Bool = False
    max_len: Positive = 20  # history length of this dataset's main experiments (paper: 10 Electronics, 20 Books)


@validated
class SamplesConfig:
    """The `samples` section: how every enabled dataset's samples are built (max_len is per dataset)."""

    protocol: Literal[PROTOCOLS] = "dien"
    seed: Seed = 0
    valid_frac: Fraction = 0.1
    test_frac: Fraction = 0.1

    def __post_init__(self) -> None:
        if self.valid_frac + self.test_frac >= 1:
            raise ValueError(f"valid_frac + test_frac = {self.valid_frac} + {self.test_frac} must be below 1, so that "
                             "training keeps some users (e.g. 0.1 + 0.1)")


@validated
class ExperimentSpec:
    """One entry of the `experiments` section: a paper table's runs."""

    enabled: Bool = False
    backbones: Annotated[tuple[Literal[BACKBONE_NAMES], ...], Field(min_length=1)] = BACKBONE_NAMES
    variants: Annotated[tuple[Literal[VARIANTS], ...], Field(min_length=1)] = VARIANTS
    phis: tuple[Unit, ...] = ()  # φ values of the MICN runs; empty = micn.phi
    # φ values of the control runs; null = the same as `phis`. Under Adam, scaling the only gradient
    # e_ctrl receives by a constant φ > 0 leaves its updates unchanged up to Adam's ε, so one
    # control φ stands for a whole φ sweep (Table 3): micn at every φ is paired with it.
    control_phis: tuple[Unit, ...] | None = None
    max_lens: tuple[Positive, ...] = ()  # history lengths; empty = each dataset's max_len
    # The mechanism experiment: one synthetic world per κ (the generate section's
    # profile and seed, κ = 1 being the default world itself), strictly decreasing from the first.
    # With kappas set, the experiment trains on those worlds instead of the `datasets` section's.
    kappas: tuple[Unit, ...] = ()
    ablations: tuple[Literal[ABLATIONS], ...] = ()  # information ablations of base runs, at each κ
    ablation_backbones: tuple[Literal[BACKBONE_NAMES], ...] = ("din",)  # whose base runs are ablated
    supervisions: tuple[Literal[SUPERVISIONS], ...] = ()  # what L_micn predicts in the micn runs; empty = micn.supervision
    # whose micn runs train every supervision (the others: the first one only); empty = every backbone
    supervision_backbones: tuple[Literal[BACKBONE_NAMES], ...] = ()
    # Seeds of some backbones' runs instead of grid.seeds (more seeds where a paired interval is too wide)
    backbone_seeds: dict[Literal[BACKBONE_NAMES], Annotated[tuple[Seed, ...], Field(min_length=1)]] = (
        dataclasses.field(default_factory=dict))

    def __post_init__(self) -> None:
        lists = {key: getattr(self, key) for key in ("phis", "control_phis", "max_lens", "kappas", "ablations",
                                                         "ablation_backbones", "supervisions", "supervision_backbones")}
        lists.update({f"backbone_seeds.{b}": seeds for b, seeds in self.backbone_seeds.items()})
        for key, values in lists.items():
            values = values or ()
            if len(set(values)) != len(values):
                raise ValueError(f"{key}: repeated values in {list(values)}")
        if any(a <= b for a, b in zip(self.kappas, self.kappas[1:])):
            raise ValueError(f"kappas: must be strictly decreasing (the sweep from the default world's 1.0 down), "
                             f"got {list(self.kappas)}")
        if self.ablations and not self.kappas:
            raise ValueError("ablations: information ablations belong to the mechanism experiment (set kappas too)")


@validated
class GridConfig:
    """The `grid` section: seeds (the only key that changes results) and how runs are executed."""

    seeds: Annotated[tuple[Seed, ...], Field(min_length=1)] = (1, 2, 3, 4, 5)
    retries: NonNegative = 1  # Prefect task retries of a failed run before it is recorded as failed
    retry_delay_s: Annotated[float, Strict(), Field(ge=0.0)] = 2.0
    runner: Literal[RUNNERS] = "auto"  # auto: dask when an address is set, else threads
    max_workers: Positive = 2  # runs in parallel with the thread runner
    address: Str | None = None  # a Dask scheduler, tcp://host:8786; env MICN_GRID_ADDRESS wins
    connect_timeout_s: Annotated[float, Strict(), Field(gt=0.0)] = 10.0  # how long to wait for the cluster

    def __post_init__(self) -> None:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {list(self.seeds)}")

    def resolved(self) -> tuple[str, str | None]:
        """(runner, address) after the environment override and `auto`."""
        address = os.environ.get(ADDRESS_ENV) or self.address
        if address and address.startswith("ray://"):
            raise MicnError(f"cluster address {address} (grid.address or ${ADDRESS_ENV}) names a Ray cluster; the grid "
                            "runs on local threads or a Dask scheduler: give tcp://host:8786, or unset both.")
        runner = self.runner
        if runner == "auto":
            runner = "thread" if not address else "dask"
        if runner == "dask" and not address:
            raise MicnError(f"grid.runner is {runner} but no cluster address is set (grid.address or ${ADDRESS_ENV}).")
        return runner, address


@validated
class MICNConfig:
    """The `micn` section: the MICN auxiliary task (micn/models/micn_aux.py). Whether a run uses it is
    the run's `variant` ("base" | "control" | "micn"), not a field here; a control run uses only
    `d_aux` and `phi` (the width and gradient scale of its extra embedding half)."""

    d_aux: Annotated[int, Strict(), Field(ge=2)] = 36  # width of e_aux (item half ⌈d/2⌉ ⊕ category half ⌊d/2⌋)
    # K_u = max(1, min(k_max, ⌊log2 |I_u|⌋)): 5 leaves the paper's formula uncut at every length up to
    # 63, so Table 4's length 50 gets its 5 interests (MIND capped at 4 in practice; 4 was our earlier default)
    k_max: Positive = 5
    iterations: Positive = 3  # dynamic-routing iterations r (MIND: 3)
    # label-aware attention sharpness; >= 100 or .inf = hard argmax (MIND default 100): the one
    # number where infinity is meaningful, so it alone allows it (NaN is still refused below).
    pow_p: Annotated[float, Strict(), Field(ge=0.0, allow_inf_nan=True)] = 2.0
    n_neg: Positive = 100  # sampled candidates per batch for the sampled softmax
    sampler: Literal[SAMPLERS] = "log_uniform"  # log_uniform (popularity-like) | uniform
    lambda_micn: Annotated[float, Strict(), Field(ge=0.0)] = 1.0  # λ, weight of L_micn in the total loss
    phi: Unit = 0.3  # φ, share of the MAIN gradient reaching e_aux; 1 − φ comes from L_micn
    routing_std: Annotated[float, Strict(), Field(ge=0.0)] = 1.0  # σ of the fresh N(0, σ²) routing logits
    # The user tower (micn/models/micn_aux.py). Default: MIND's ReLU layer after the capsules
    # (post_layers [64], then a Linear back to d_aux), which is what lets L_micn learn
    # (docs/findings/2026-12-01-training-regime). The ABLATION `post_layers: []` (with user_profile
    # false and k_max 4) is the capsule-only form, bit for bit. The profile stays opt-in: under the
    # `dien` protocol every evaluated user is out-of-vocabulary, so it is one constant row there.
    user_profile: Bool = False  # join the user profile (a MICN-owned user-id embedding) to the capsules
    post_layers: tuple[Positive, ...] = (64,)  # hidden widths of MIND's ReLU layers on each capsule (+ Linear to d_aux)
    retrieval_k: Positive = 50  # K of the Recall@K evidence (MIND's evaluation: Recall@50)
    # What L_micn predicts (micn/models/micn_aux.py): target (the paper) | history (prefix -> next behaviour)
    supervision: Literal[SUPERVISIONS] = "target"

    def __post_init__(self) -> None:
        if math.isnan(self.pow_p):
            raise ValueError("pow_p must be a number >= 0 (0 = uniform, 1 = softmax, >= 100 or .inf = hard argmax), got nan")


@validated
class TrainConfig:
    """The `train` section: optimisation of one run."""

    batch_size: Positive = 256
    eval_batch_size: Positive = 4096
    epochs: Positive = 5
    lr: Annotated[float, Strict(), Field(gt=0.0)] = 1e-3
    # adam: dense Adam over every parameter (a step costs O(catalogue)); lazy_adam: embedding rows
    # are updated only when the batch looks them up (a step costs O(batch); micn/optim.py)
    optimizer: Literal["adam", "lazy_adam"] = "lazy_adam"
    # Validation (model selection, early stopping, the learning evidence) runs this many times per
    # epoch, at evenly spaced steps, the last at the epoch's end. The backbones peak after about
    # one pass over the data and overfit from the second, so per-epoch selection is too coarse.
    evals_per_epoch: Positive = 5
    patience: NonNegative = 5  # evaluations in a row without a better validation AUC before stopping
    # MICN runs only: the first micn_warmup_epochs · (steps per epoch) steps train L_micn alone (the
    # main BCE and DIEN's auxiliary loss are left out), so MICN has learned before the CTR model's
    # peak; their evaluations are recorded but never selected. 0 = joint training from step 1.
    micn_warmup_epochs: Annotated[float, Strict(), Field(ge=0.0)] = 0.0
    dien_aux_weight: Annotated[float, Strict(), Field(ge=0.0)] = 1.0  # weight of DIEN's auxiliary loss (reference: 1)
    # hidden activation of DIEN's auxiliary net: sigmoid is the reference's and cannot learn on
    # small embeddings (its loss stays at 2 ln 2, micn/models/dien.py); prelu (default) or relu learn.
    dien_aux_activation: Literal["sigmoid", "prelu", "relu"] = "prelu"
    d_item: Positive = 18  # item-id embedding width (DIEN reference: 18)
    d_category: Positive = 18  # category embedding width
    threads: NonNegative = 0  # torch.set_num_threads; 0 keeps torch's default
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto (CUDA when available) | cpu | cuda

    def aux_weights(self, micn: MICNConfig | None = None) -> dict[str, float]:
        """Weight of each auxiliary loss a model may return; `micn` is None for a run without MICN."""
        weights = {"dien_aux": self.dien_aux_weight}
        if micn is not None:
            weights["micn"] = micn.lambda_micn  # L = L_main + λ·L_micn
        return weights


SECTION_TYPES: dict[str, type] = {"generate": GenerateConfig, "samples": SamplesConfig, "grid": GridConfig,
                                  "train": TrainConfig, "micn": MICNConfig}
NAMED_SECTIONS: dict[str, type] = {"datasets": DatasetSpec, "experiments": ExperimentSpec}


@dataclasses.dataclass(frozen=True)
class Params:
    """Every section of a parameter file, validated."""

    generate: GenerateConfig
    datasets: dict[str, DatasetSpec]
    samples: SamplesConfig
    experiments: dict[str, ExperimentSpec]
    grid: GridConfig
    train: TrainConfig
    micn: MICNConfig
    path: str = "params.yaml"


# ---------------------------------------------------------------------------------------------
# Reading the file


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (YAML would keep the last) and any
    alias (`*name`): a parameter file has no use for them, and nested aliases expand exponentially
    (nine levels of nine make a list of 387 million items from a few hundred bytes)."""

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 - PyYAML's signature
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"an alias (*{event.anchor}); aliases and anchors are not allowed in a parameter file, "
                "write the values out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key]}); remove one of them",
                    key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_params(path: str | Path = "params.yaml") -> dict:
    """The raw mapping of a parameter file; unknown top-level sections and duplicate keys are errors."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:  # a stream, so that YAML errors name the file and line
            data = yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except FileNotFoundError:
        raise MicnError(f"{path}: no such parameter file; run from the repository root or pass --params.") from None
    except IsADirectoryError:
        raise MicnError(f"{path}: is a directory, not a parameter file; pass --params FILE.") from None
    except UnicodeDecodeError as e:
        raise MicnError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); give a YAML parameter file.") from None
    except yaml.YAMLError as e:
        raise MicnError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MicnError(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)}), got {type(data).__name__}.")
    unknown = [str(k) for k in data if k not in SECTIONS]
    if unknown:
        raise MicnError(f"{path}: unknown section(s) {', '.join(unknown)}; valid sections: {', '.join(SECTIONS)}.")
    return data


def load_section(path: str | Path, section: str, cls: type[T]) -> T:
    """The dataclass `cls` built from `params.yaml`'s `section` (missing keys take defaults)."""
    data = read_params(path)
    return from_mapping(cls, data.get(section) or {}, where=f"{path}: {section}")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Every section of the file; a MicnError lists every bad key of every section at once."""
    data = read_params(path)
    problems: list[str] = []

    def build(cls: type[T], values: Any, section: str) -> T | None:
        obj, found = _validate(cls, values, section)
        problems.extend(found)
        return obj

    built: dict[str, Any] = {name: build(cls, data.get(name) or {}, name) for name, cls in SECTION_TYPES.items()}
    for name, cls in NAMED_SECTIONS.items():
        values = data.get(name) or {}
        if not isinstance(values, Mapping):
            problems.append(f"{name}: expected a mapping of name -> settings, got {values!r}")
            values = {}
        entries = {}
        for key, spec in values.items():
            problem = dataset_name_problem(key) if name == "datasets" else None
            if problem:
                problems.append(f"{name}.{key!r}: {problem}")
                continue
            entries[str(key)] = build(cls, spec or {}, f"{name}.{key}")
        built[name] = entries
    if problems:
        raise MicnError(_join(str(path), problems))
    return Params(**built, path=str(path))


def from_mapping(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """Build section type `cls` from a mapping; every unknown key, wrong type or bad value is named.

    `where` is "<file>: <section>" (or just "<section>"); messages read "<file>: <section>.<key>: ...".
    """
    file, _, section = where.rpartition(": ")
    obj, problems = _validate(cls, values, section)
    if problems:
        raise MicnError(_join(file or None, problems))
    return obj  # type: ignore[return-value]


def _validate(cls: type[T], values: Any, section: str) -> tuple[T | None, list[str]]:
    """(the object or None, ["<section>.<key>: problem", ...])."""
    if not isinstance(values, Mapping):
        return None, [f"{section}: expected a mapping of keys, got {type(values).__name__} {values!r}"]
    fields = [f.name for f in dataclasses.fields(cls)]
    problems = [f"{section}.{k}: unknown key; valid keys: {', '.join(fields)}" for k in values if k not in fields]
    known = {k: v for k, v in values.items() if k in fields}
    try:
        obj = cls(**known)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        # A list whose every item is bad is also "too short" after validation: say it once.
        errors = [err for err in errors if not (err["type"] == "too_short" and any(
            o["loc"][:len(err["loc"])] == err["loc"] and len(o["loc"]) > len(err["loc"]) for o in errors))]
        return None, problems + [_describe(err, section) for err in errors]
    return (None if problems else obj), problems


def _join(path: str | None, problems: list[str]) -> str:
    head = f"{path}: " if path else ""
    if len(problems) == 1:
        return f"{head}{problems[0]}."
    return f"{head}{len(problems)} problems: " + "; ".join(problems) + "."


_EXPECTED = {"int_type": "expected an integer", "float_type": "expected a number", "bool_type": "expected true or false",
             "string_type": "expected a string", "finite_number": "expected a finite number",
             "tuple_type": "expected a list", "int_from_float": "expected an integer"}


def _describe(err: dict, section: str) -> str:
    """One pydantic error as "<section>.<key>: what is wrong (got value)"."""
    key = section
    for part in err["loc"]:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    msg = err["msg"].removeprefix("Value error, ")
    msg = _EXPECTED.get(err["type"], msg[:1].lower() + msg[1:])
    got = "" if err["type"] == "value_error" else f" (got {shown(err['input'])})"
    return f"{key}: {msg}{got}"


def shown(value: Any, limit: int = 80) -> str:
    """`repr(value)` for an error message, cut to `limit` characters with its full length said."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


# ---------------------------------------------------------------------------------------------
# Values given on the command line


def dataset_name_problem(name: object) -> str | None:
    """Why `name` cannot be a dataset name (None when it can): letters, digits, '-' and '_' only.

    The name becomes a folder and a SQL value; a trailing newline or space would make two
    datasets that look identical.
    """
    if not isinstance(name, str) or not name:
        return f"a dataset name must be a non-empty string, got {name!r}"
    if name != name.strip() or any(not c.isprintable() for c in name):
        return f"a dataset name must not hold whitespace or control characters, got {name!r}"
    if not name.replace("_", "").replace("-", "").isalnum():
        return f"a dataset name may hold letters, digits, '-' and '_' only, got {name!r}"
    return None


def seed_argument(text: str) -> int:
    """argparse `type=` for --seed: an integer in 0..2**63-1; argparse prints the message, exit 2."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to 2**63-1, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be from 0 to 2**63-1 = {SEED_MAX}, got {text}")
    return value
