"""`WorldSummary`: what one generated world is, and the one type `ground_truth/world.json` serialises.

`to_dict` is the file's layout (a few keys repeat a profile value, e.g. `rho`, `n_topics`, for
readers such as `micn.data.oracle.Oracle`; they are derived here, never stored twice), and
`WorldSummary.read` parses the file back into an equal summary. The key `fmt` is the release
format (`format` everywhere else): the file's bytes are pinned by tests/data/synthetic_hashes.json.
So `profile_params.kappa` is written only when kappa != 1 (a missing key reads as 1.0), and the
`model` line names P(i | topic(i)) only then.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from micn.data.synthetic.profiles import Profile
from micn.errors import MicnError

GROUND_TRUTH_DIR = "ground_truth"
WORLD_JSON = "world.json"
TABLES = ("users", "items", "categories")  # ground_truth/<table>.parquet
MODEL = (
    "P(i | u, hist) = P(topic(i) | u, z_last) * P(cat(i) | topic(i)) * P(i | cat(i)); "
    "P(z' | u, z) = rho * 1[z' = z] + (1 - rho) * w_u[z']; empty history: w_u[z']"
)
MODEL_KAPPA = (  # kappa < 1: topic(i) is the topic item i serves (items.parquet `topic`)
    "P(i | u, hist) = P(topic(i) | u, z_last) * P(i | topic(i)); "
    "P(i | t) = 1[topic(i) = t] * P(cat(i) | topic(cat(i))) * P(i | cat(i)) / sum over the items serving t; "
    "P(z' | u, z) = rho * 1[z' = z] + (1 - rho) * w_u[z']; z_last = topic(last history item); "
    "empty history: w_u[z']"
)


def _from_profile(size: str, doc: str) -> property:
    """A size the profile fixes, read from it (stored once, in `WorldSummary.profile`)."""
    return property(lambda self: getattr(self.profile, size), doc=doc)


@dataclass(frozen=True)
class WorldSummary:
    """What `generate_world` wrote, with the counts a caller may want to check against.

    Sizes fixed by the profile (`n_users`, `n_items`, `n_categories`, `n_topics`, `n_reviews`) are
    properties of `profile`; only what the draws decided is stored."""

    profile: Profile
    seed: int
    format: str  # release format, "2014" | "2018"
    name: str  # the category name in the file names
    topic_names: tuple[str, ...]  # (T,)
    n_review_lines: int  # lines in the reviews file (> n_reviews only for 2018 style duplicates)
    n_meta_lines: int  # = n_items - n_missing_meta
    n_missing_meta: int  # reviewed items planted without a metadata line
    n_items_reviewed: int
    first_unix: int  # time of the first review (UTC midnight)
    last_unix: int  # time of the last review
    reviews_file: str  # file names inside out_dir
    meta_file: str
    out_dir: Path  # where the world was written (not in world.json: the folder may move)
    seconds: float = field(default=0.0, compare=False)  # generation wall time (not in world.json)

    n_users = _from_profile("n_users", "Distinct reviewers.")
    n_items = _from_profile("n_items", "Items in the ground-truth catalogue (reviewed or not).")
    n_categories = _from_profile("n_categories", "Categories (each holds at least one item).")
    n_topics = _from_profile("n_topics", "Planted topics (interests).")
    n_reviews = _from_profile("n_reviews", "Distinct (user, item, time) reviews.")
    kappa = _from_profile("kappa", "Probability that an item serves its category's topic.")

    @property
    def item_coverage(self) -> float:
        """Share of the catalogue that has at least one review."""
        return self.n_items_reviewed / self.profile.n_items

    @property
    def reviews_path(self) -> Path:
        return self.out_dir / self.reviews_file

    @property
    def meta_path(self) -> Path:
        return self.out_dir / self.meta_file

    @property
    def ground_truth_dir(self) -> Path:
        return self.out_dir / GROUND_TRUTH_DIR

    def to_dict(self) -> dict[str, Any]:
        """The layout of world.json."""
        params = asdict(self.profile)
        if params["kappa"] == 1.0:
            del params["kappa"]  # at kappa = 1 world.json has no kappa key (the pinned layout, see Profile.kappa)
        return {
            "profile": self.profile.name,
            "profile_params": params,
            "seed": self.seed,
            "fmt": self.format,
            "name": self.name,
            "rho": self.profile.rho,
            "n_topics": self.n_topics,
            "topic_names": list(self.topic_names),
            "counts": {
                key: getattr(self, key)
                for key in ("n_users", "n_items", "n_categories", "n_topics", "n_reviews", "n_review_lines",
                            "n_meta_lines", "n_missing_meta", "n_items_reviewed")
            },  # fmt: skip
            "item_coverage": self.item_coverage,
            "time_range": {"first_unix": self.first_unix, "last_unix": self.last_unix},
            "files": {"reviews": self.reviews_file, "meta": self.meta_file}
            | {table: f"{GROUND_TRUTH_DIR}/{table}.parquet" for table in TABLES},
            "model": MODEL if self.kappa == 1.0 else MODEL_KAPPA,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def write(self) -> Path:
        """Write `<out_dir>/ground_truth/world.json`; returns its path."""
        path = self.ground_truth_dir / WORLD_JSON
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: str | Path) -> WorldSummary:
        """Parse `<out_dir>/ground_truth/world.json` back (its out_dir is the folder above ground_truth/)."""
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            params = dict(d["profile_params"])
            params["topics_per_user_p"] = tuple(params["topics_per_user_p"])
            return cls(
                profile=Profile(**params),
                seed=d["seed"],
                format=d["fmt"],
                name=d["name"],
                topic_names=tuple(d["topic_names"]),
                **{key: d["counts"][key] for key in ("n_review_lines", "n_meta_lines", "n_missing_meta",
                                                     "n_items_reviewed")},  # fmt: skip
                first_unix=d["time_range"]["first_unix"],
                last_unix=d["time_range"]["last_unix"],
                reviews_file=d["files"]["reviews"],
                meta_file=d["files"]["meta"],
                out_dir=path.parent.parent,
            )
        except OSError as e:
            raise MicnError(
                f"{path}: cannot read the world summary ({e.strerror}); run `micn generate` first."
            ) from None
        except (ValueError, KeyError, TypeError) as e:
            raise MicnError(
                f"{path}: not a world summary written by micn.data.synthetic ({type(e).__name__}: {e}); "
                "expected the layout of WorldSummary.to_dict (profile_params, seed, fmt, name, topic_names, "
                "counts, time_range, files); regenerate the world with `micn generate`."
            ) from None
