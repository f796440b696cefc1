"""What a samples build is asked to do (`SamplesJob`) and what it did (`SamplesReport`).

The report and the feature map's `counts` are both read from the `summary` mart (rows of
subject, outcome, reason, n); `summary_counts` turns those rows into the one nested dict both use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from micn.config import SamplesConfig, dataset_name_problem, from_mapping
from micn.errors import MicnError
from micn.names import SPLITS


@dataclass(frozen=True)
class SamplesJob:
    """One samples build: a warehouse dataset at one history length, with the `samples` settings.

    `config` is the params.yaml `samples` section, shared by every dataset; `max_len` is the
    dataset's own (`datasets.<name>.max_len`, or an experiment's `max_lens`), hence the pair.
    """

    dataset: str
    max_len: int
    config: SamplesConfig = SamplesConfig()

    def __post_init__(self) -> None:
        problem = dataset_name_problem(self.dataset)
        if problem:
            raise MicnError(f"dataset={self.dataset!r} is not valid: {problem}; give the name of a dataset in the "
                            "warehouse (e.g. 'electronics').")
        if isinstance(self.max_len, bool) or not isinstance(self.max_len, int):
            raise MicnError(f"max_len={self.max_len!r} must be an integer: the number of most recent behaviors kept in "
                            "a history (paper: 10 for Electronics, 20 for Books).")
        if self.max_len < 1:
            raise MicnError(f"max_len={self.max_len} must be >= 1: it is the number of most recent behaviors kept in a "
                            "history (paper: 10 for Electronics, 20 for Books).")
        if not isinstance(self.config, SamplesConfig):
            raise MicnError(f"config={self.config!r} must be a micn.config.SamplesConfig (the `samples` section).")

    @classmethod
    def of(cls, dataset: str, max_len: int, **settings: Any) -> SamplesJob:
        """The job from plain values (the keyword API, CLI flags): the settings are validated as the
        `samples` section would be, so a bad value is a MicnError naming its key."""
        return cls(dataset, max_len, from_mapping(SamplesConfig, settings, where="samples"))

    def sql_params(self) -> dict[str, Any]:
        """Every named parameter the sample models may use (`micn.data.sql.bind` picks each model's)."""
        c = self.config
        return {"dataset": self.dataset, "protocol": c.protocol, "max_len": self.max_len, "seed": c.seed,
                "valid_frac": c.valid_frac, "test_frac": c.test_frac}


@dataclass(frozen=True)
class SamplesReport:
    dataset: str
    protocol: str
    db: str
    out_dir: str
    users: int  # users of the dataset in the warehouse
    users_kept: int
    users_dropped: dict[str, int]  # reason -> users
    users_per_split: dict[str, int]  # users with at least one pair in the split (din: every user is in test)
    pairs_per_split: dict[str, int]  # a pair = one positive row + one negative row
    samples_per_split: dict[str, int]  # rows in the split's Parquet file (2 per pair)
    targets_history_shortened: int  # targets whose history lost behaviors sharing the target's timestamp
    vocab_sizes: dict[str, int]  # n_users, n_items, n_categories, including the 2 reserved ids
    checks: dict[str, int]  # check -> offending rows (all 0: a failing check raises)
    files: tuple[str, ...]
    seconds: float

    @property
    def positives_per_split(self) -> dict[str, int]:
        return dict(self.pairs_per_split)

    @property
    def negatives_per_split(self) -> dict[str, int]:
        return dict(self.pairs_per_split)

    def summary_rows(self) -> list[tuple[str, str, str, int]]:
        """(subject, outcome, reason, count) rows: what was kept and dropped, and why."""
        rows = [("users", "total", "", self.users), ("users", "kept", "", self.users_kept)]
        rows += [("users", "dropped", reason, n) for reason, n in self.users_dropped.items()]
        rows += [("users", f"in {s}", "", self.users_per_split[s]) for s in SPLITS]
        rows += [("samples", s, "positives + negatives", self.samples_per_split[s]) for s in SPLITS]
        rows.append(("targets", "history shortened", "behaviors sharing the target timestamp left out",
                     self.targets_history_shortened))
        return rows


def summary_counts(summary: list[tuple]) -> dict:
    """The `summary` mart's (subject, outcome, reason, n) rows as nested counts: users (total, kept,
    dropped by reason), users per split, rows / positives / negatives per split, shortened histories."""
    users_dropped = {r: n for s, o, r, n in summary if s == "users" and o == "dropped"}
    kept = sum(n for s, o, r, n in summary if s == "users" and o == "kept")
    users_per_split = {sp: sum(n for s, o, r, n in summary if s == "users" and o == sp) for sp in SPLITS}
    pairs = {sp: sum(n for s, o, r, n in summary if s == "pairs" and o == sp) for sp in SPLITS}
    shortened = sum(n for s, o, r, n in summary if s == "targets")
    return {
        "users": {"total": kept + sum(users_dropped.values()), "kept": kept, "dropped": dict(sorted(users_dropped.items()))},
        "users_per_split": users_per_split,
        "samples": {sp: {"rows": 2 * pairs[sp], "positives": pairs[sp], "negatives": pairs[sp]} for sp in SPLITS},
        "targets_history_shortened": shortened,
    }
