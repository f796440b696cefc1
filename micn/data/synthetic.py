"""A seeded synthetic "Amazon world" with planted multiple interests (DESIGN §3.4).

Why it exists: a fresh clone must run the whole experiment with no downloads, and a model's
AUC means little without a ceiling to compare it to. The generator therefore writes raw files
**in the real Amazon formats** (so the real ingest code is what reads them) and, beside them,
the ground truth of the generative model, from which `micn.data.oracle.Oracle` computes the
true probability of any next item.

Generative model (all draws from one seeded `numpy.random.Generator` tree):

    topics      T topics; categories are partitioned into topics (each topic >= 1 category),
                topic popularity pi_t is Zipf-like (exponent `topic_zipf`).
    categories  P(c | t) is Zipf-like over the topic's categories (exponent `category_zipf`).
    items       each item belongs to exactly one category; popular categories hold more items
                (counts ~ popularity ** `items_per_category_power`), and P(i | c) is Zipf-like
                within the category (exponent `item_zipf`).
    users       each user holds 1-4 topics (probabilities `topics_per_user_p`), drawn without
                replacement proportionally to pi (Gumbel-top-k), with Dirichlet(`dirichlet_alpha`)
                mixture weights w_u.
    sequences   z_1 ~ w_u; z_{j+1} = z_j with probability rho, else z_{j+1} ~ w_u (which may
                pick z_j again), so P(z' | u, z) = rho * 1[z' = z] + (1 - rho) * w_u[z'];
                c_j ~ P(c | z_j); i_j ~ P(i | c_j).
    lengths     every user has >= `min_reviews_per_user` reviews (the 5-core rule); the rest of
                `n_reviews` is spread by a multinomial over log-normal user activities, so the
                lengths sum to exactly `n_reviews`.
    time        per user strictly increasing whole days (>= 1 day apart, UTC midnight) between
                2000-01-01 and 2014-06-30, starts skewed towards the later years like the real dumps.

Deviations from the real dumps, on purpose: review texts are short template sentences; items
never reviewed may exist in the catalogue (coverage is reported); a small planted fraction of
reviewed items has no metadata line, so that the ingest's `default_cat` rule is exercised (their
true category stays in the ground truth); in the 2018 format a small planted fraction of
reviews is repeated once more with another `style` (the real 2018 dumps repeat a review once
per style variant), so that the ingest's de-duplication is exercised.

Everything per review is vectorised numpy (inverse-CDF sampling through one global
`searchsorted` with per-group offsets, forward fill of topic switches with
`np.maximum.accumulate`); lines are assembled by Polars string expressions and gzip-compressed
in a background thread, so the `electronics` profile (1.7M reviews) takes well under a minute.
Per-item Python work is limited to the metadata lines.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import html
import io
import json
import operator
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from micn.errors import MicnError

__all__ = ["PROFILES", "Profile", "WorldSummary", "generate_world", "FORMATS"]

FORMATS: tuple[str, ...] = ("2014", "2018")

# Calendar: day 0 is 2000-01-01; the last usable day is 2014-06-30 ("mid-2014").
_DAY0 = _dt.date(2000, 1, 1)
_N_DAYS = (_dt.date(2014, 7, 1) - _DAY0).days  # 5295 usable days
_UNIX_DAY0 = 946_684_800  # 2000-01-01T00:00:00Z
_SECONDS_PER_DAY = 86_400

_GZIP_LEVEL = 6  # level only changes the bytes, never the content; 6 = gzip's usual default
_CHUNK_ROWS = 1 << 19  # review lines built and compressed per chunk (bounds peak memory)
_GUMBEL_CHUNK = 1 << 16  # users per Gumbel-top-k block (fixed, so results do not depend on RAM)


@dataclass(frozen=True)
class Profile:
    """Sizes and knobs of one synthetic world.

    Counts are exact: the reviews file holds `n_users` distinct reviewers and `n_reviews`
    distinct (user, item, time) reviews; the ground truth holds `n_items` items in
    `n_categories` categories grouped into `n_topics` topics.
    """

    name: str
    n_users: int
    n_items: int
    n_categories: int
    n_reviews: int
    n_topics: int
    main_category: str = "Electronics"  # root of every category path (and salesRank key)
    rho: float = 0.6  # probability that the next behavior stays in the current topic
    topics_per_user_p: tuple[float, ...] = (0.20, 0.35, 0.27, 0.18)  # P(user holds 1, 2, 3, 4 topics)
    dirichlet_alpha: float = 1.0  # concentration of a user's mixture weights
    topic_zipf: float = 0.6  # exponent of topic popularity
    category_zipf: float = 1.0  # exponent of P(category | topic)
    item_zipf: float = 1.0  # exponent of P(item | category)
    items_per_category_power: float = 0.8  # item counts per category ~ popularity ** power
    length_sigma: float = 1.0  # log-normal sigma of user activity (skew of sequence lengths)
    min_reviews_per_user: int = 5  # the 5-core rule
    max_reviews_per_user: int = 2000  # cap (must fit in the calendar: one review per day at most)
    mean_gap_days: float = 45.0  # mean days between two reviews of a user (>= 1)
    missing_meta_fraction: float = 0.005  # fraction of reviewed items planted without a metadata line
    duplicate_fraction_2018: float = 0.002  # fraction of 2018 reviews repeated with another style

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"Profile {self.name!r}: {message}")

        need(self.n_users >= 1, f"n_users must be >= 1, got {self.n_users}")
        need(self.n_topics >= 1, f"n_topics must be >= 1, got {self.n_topics}")
        need(
            self.n_categories >= self.n_topics,
            f"n_categories ({self.n_categories}) must be >= n_topics ({self.n_topics}): every topic needs a category",
        )
        need(
            self.n_items >= self.n_categories,
            f"n_items ({self.n_items}) must be >= n_categories ({self.n_categories}): every category needs an item",
        )
        need(self.min_reviews_per_user >= 1, f"min_reviews_per_user must be >= 1, got {self.min_reviews_per_user}")
        need(
            self.min_reviews_per_user <= self.max_reviews_per_user <= _N_DAYS,
            f"max_reviews_per_user ({self.max_reviews_per_user}) must lie in "
            f"[min_reviews_per_user={self.min_reviews_per_user}, {_N_DAYS} days in the calendar]",
        )
        need(
            self.min_reviews_per_user * self.n_users <= self.n_reviews <= self.max_reviews_per_user * self.n_users,
            f"n_reviews ({self.n_reviews}) must lie in [{self.min_reviews_per_user} * n_users, "
            f"{self.max_reviews_per_user} * n_users] = [{self.min_reviews_per_user * self.n_users}, "
            f"{self.max_reviews_per_user * self.n_users}]",
        )
        need(0.0 <= self.rho <= 1.0, f"rho must lie in [0, 1], got {self.rho}")
        p = self.topics_per_user_p
        need(
            len(p) >= 1 and all(x >= 0 for x in p) and abs(sum(p) - 1.0) < 1e-9 and sum(p[: self.n_topics]) > 0,
            f"topics_per_user_p must be non-negative probabilities summing to 1, got {p}",
        )
        need(self.dirichlet_alpha > 0, f"dirichlet_alpha must be > 0, got {self.dirichlet_alpha}")
        need(self.mean_gap_days >= 1, f"mean_gap_days must be >= 1, got {self.mean_gap_days}")
        need(
            0.0 <= self.missing_meta_fraction < 1.0,
            f"missing_meta_fraction must lie in [0, 1), got {self.missing_meta_fraction}",
        )
        need(
            0.0 <= self.duplicate_fraction_2018 < 1.0,
            f"duplicate_fraction_2018 must lie in [0, 1), got {self.duplicate_fraction_2018}",
        )


PROFILES: dict[str, Profile] = {
    # Tests: generates in a fraction of a second.
    "tiny": Profile("tiny", n_users=300, n_items=400, n_categories=24, n_reviews=3_000, n_topics=6),
    # The `dvc repro` demo on a laptop.
    "default": Profile("default", n_users=20_000, n_items=5_000, n_categories=100, n_reviews=200_000, n_topics=10),
    # The shape of the real Electronics 5-core dump (DIEN / MICN papers), for benchmarks.
    "electronics": Profile(
        "electronics", n_users=192_403, n_items=63_001, n_categories=801, n_reviews=1_689_188, n_topics=40
    ),
    # The shape of the real Books 5-core dump.
    "books": Profile(
        "books",
        n_users=603_668,
        n_items=367_982,
        n_categories=1_600,
        n_reviews=8_898_041,
        n_topics=64,
        main_category="Books",
    ),
}


@dataclass(frozen=True)
class WorldSummary:
    """What `generate_world` wrote, with the counts a caller may want to check against."""

    profile: str
    seed: int
    fmt: str
    name: str
    out_dir: Path
    reviews_path: Path
    meta_path: Path
    ground_truth_dir: Path
    n_users: int
    n_items: int  # items in the ground-truth catalogue
    n_categories: int
    n_topics: int
    n_reviews: int  # distinct (user, item, time) reviews
    n_review_lines: int  # lines in the reviews file (> n_reviews only for 2018 style duplicates)
    n_meta_lines: int  # = n_items - n_missing_meta
    n_missing_meta: int  # reviewed items planted without a metadata line
    n_items_reviewed: int
    item_coverage: float  # n_items_reviewed / n_items
    seconds: float


# --------------------------------------------------------------------------------------------
# Vocabularies. Small, fixed lists: the point is realistic *shapes* (apostrophes, quotes, non-ASCII),
# not realistic text.
# --------------------------------------------------------------------------------------------

_VOCAB: dict[str, dict[str, list[str]]] = {
    "Electronics": {
        "departments": [
            "Computers & Accessories", "Camera & Photo", "Car Electronics", "Home Audio", "Portable Audio & Video",
            "TV & Video", "Cell Phones", "Office Electronics", "GPS & Navigation", "Video Games", "Networking",
            "Wearable Technology", "Security & Surveillance", "Musical Gear", "Power & Batteries", "Smart Home",
        ],
        "modifiers": [
            "USB", "Wireless", "Bluetooth", "HDMI", "Portable", "Outdoor", "Kids'", "Women's", "Men's", "Gaming",
            "Studio", "Travel", "Rugged", "Compact", "Digital", "Analog", "Smart", "Solar", "Marine", "Automotive",
            "Desktop", "Laptop", "Tablet", "Camera", "Drone", "Audio", "Video", "Network", "Optical", "Magnetic",
            "Rechargeable", "Waterproof", "Ergonomic", "Mini", "Pro", "Premium", "Budget", "Retro", "LED", "Thermal",
            "Infrared", "Modular",
        ],
        "nouns": [
            "Cables", "Adapters", "Chargers", "Headphones", "Speakers", "Microphones", "Keyboards", "Mice", "Monitors",
            "Cases", "Sleeves", "Mounts", "Stands", "Batteries", "Power Banks", "Hubs", "Routers", "Antennas",
            "Lenses", "Filters", "Tripods", "Flashes", "Memory Cards", "Hard Drives", "Docks", "Remotes", "Projectors",
            "Amplifiers", "Receivers", "Turntables", "Radios", "Scanners", "Printers", "Webcams", "Controllers",
            "Screen Protectors", "Styluses", "Cooling Pads", "Switches", "Sensors",
        ],
        "brands": [
            "Sony", "Anker", "Belkin", "Logitech", "Samsung", "Panasonic", "Kingston", "SanDisk", "Canon", "Nikon",
            "AmazonBasics", "Sennheiser", "JBL", "Philips", "Garmin", "Netgear", "TP-Link", "Cooler Master",
            "Targus", "Monster", "Pioneer", "Kenwood", "Olympus", "Fujifilm",
        ],
        "odd_brands": [
            "Müller Audio", "Café Électronique", "Señor Sound", "Zürich Labs", "Björk & Sons", "Técnica",
        ],
        "units": ["Pack", "ft", "in", "mm", "W", "GB"],
    },
    "Books": {
        "departments": [
            "Literature & Fiction", "Mystery, Thriller & Suspense", "Science Fiction & Fantasy", "Romance",
            "History", "Biographies & Memoirs", "Business & Money", "Children's Books", "Teen & Young Adult",
            "Cookbooks, Food & Wine", "Religion & Spirituality", "Science & Math", "Self-Help",
            "Politics & Social Sciences", "Arts & Photography", "Health, Fitness & Dieting",
        ],
        "modifiers": [
            "Historical", "Contemporary", "Classic", "Children's", "Women's", "Men's", "Young Adult", "Literary",
            "Epic", "Urban", "Military", "Medieval", "Victorian", "Regency", "Paranormal", "Cozy", "Hard-Boiled",
            "Dystopian", "Christian", "Jewish", "Buddhist", "Scandinavian", "Southern", "Western", "Eastern",
            "African", "Asian", "European", "American", "British", "Irish", "French", "Russian", "Japanese",
            "Ancient", "Modern", "Gothic", "Comic", "Political", "Psychological", "Legal", "Medical",
        ],
        "nouns": [
            "Fiction", "Mysteries", "Thrillers", "Romance", "Fantasy", "Science Fiction", "Horror", "Poetry", "Drama",
            "Essays", "Biographies", "Memoirs", "Histories", "Cookbooks", "Travel Guides", "Short Stories",
            "Graphic Novels", "Sagas", "Westerns", "Satire", "Fables", "Folklore", "Letters", "Diaries", "Criticism",
            "Philosophy", "Theology", "Economics", "Anthologies", "Picture Books", "Adventure", "Crime", "Espionage",
            "Sea Stories", "War Stories", "Humor", "Family Life", "Coming of Age", "Suspense", "Classics",
        ],
        "brands": [
            "Penguin", "HarperCollins", "Vintage", "Random House", "Scribner", "Knopf", "Bantam", "Tor", "Del Rey",
            "Ballantine", "Simon & Schuster", "Little, Brown", "Doubleday", "Picador", "Anchor", "Grand Central",
        ],
        "odd_brands": [
            "Éditions Gallimard", "Müller Verlag", "Señora Press", "Zoë Books", "Ångström House", "Niño Libros",
        ],
        "units": ["Edition", "Vol.", "Book", "Part", "Set", "Series"],
    },
}

_FIRST_NAMES = [
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William", "Elizabeth", "David",
    "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen", "Chris", "Nancy",
    "Daniel", "Lisa", "Matthew", "Betty", "Anthony", "Margaret", "Mark", "Sandra", "José", "Zoë", "Renée", "Jürgen",
]
_LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Wilson", "Anderson", "Taylor", "Moore", "Jackson", "Martin", "Lee", "O'Brien",
    "Thompson", "White", "Harris", "Clark", "Lewis", "Walker", "Young", "Allen", "King", "Wright", "Núñez", "Müller",
]
_NICKNAMES = ["gadget guy", "bookworm", "Yeah, well, that's just like, u...", "audiophile", "the reviewer", "Mom of 3"]
_SENTENCES = [
    "Works exactly as described.", "Does what it's supposed to do.", "Arrived quickly and well packed.",
    "Good value for the money.", "I've bought three of these so far.", "Not as sturdy as I hoped.",
    "The instructions were a bit confusing.", "My kids love it.", "Would buy again.",
    "It stopped working after a month.", "Great quality, fast shipping.", "A bit pricey but worth it.",
    "The \"premium\" label is well deserved.", "Exactly what I needed for the job.", "Fits perfectly.",
    "Five stars, no complaints.", "Returned it; it didn't fit.", "Better than the original.",
    "Customer service was helpful.", "Nice design, solid build.", "Cheap, but it does the job.",
    "The café-style finish looks great.", "Read it in one sitting.", "Recommended to all my friends.",
]
_SUMMARIES = {
    1: ["Terrible", "Don't buy", "Broke in a week", "One Star", "Waste of money"],
    2: ["Disappointing", "Not great", "Two Stars", "Meh", "Expected more"],
    3: ["OK", "Average", "Three Stars", "It's fine", "Decent for the price"],
    4: ["Very good", "Four Stars", "Solid", "Works well", "Happy with it"],
    5: ["Five Stars", "Excellent!", "Love it", "Perfect", "Great \"must have\" item", "Best purchase this year"],
}
_RATING_P = np.array([0.05, 0.05, 0.09, 0.21, 0.60])  # P(overall = 1..5): skewed to 5 like the real dumps
_STYLES = {
    "Books": [
        {"Format:": " Paperback"}, {"Format:": " Hardcover"}, {"Format:": " Kindle Edition"},
        {"Format:": " Mass Market Paperback"}, {"Format:": " Audible Audiobook"},
    ],
    "Electronics": [
        {"Color:": " Black"}, {"Color:": " White"}, {"Size:": " 6 ft"}, {"Style:": " Pro"},
        {"Size:": " 64GB", "Color:": " Silver"},
    ],
}
_PRICE_JUNK = ".a-box-inner{background-color:#fff;}.a-box-inner{background-color:#fff;}"
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]  # fmt: skip


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def generate_world(
    profile: str | Profile,
    out_dir: str | Path,
    seed: int = 0,
    fmt: str = "2014",
    name: str | None = None,
) -> WorldSummary:
    """Generate a synthetic world and write its raw files and ground truth under `out_dir`.

    Files written (`<Name>` = `name` or `profile.name.title()`):
      fmt "2014": `reviews_<Name>_5.json.gz` (JSON lines) and `meta_<Name>.json.gz`
                  (one Python dict literal per line, parse with `ast.literal_eval`);
      fmt "2018": `<Name>_5.json.gz` and `meta_<Name>.json.gz` (both strict JSON lines);
      always:     `ground_truth/{users,items,categories}.parquet` and `ground_truth/world.json`.
    The same (profile, seed, fmt, name) always gives byte-identical files.
    """
    started = time.perf_counter()
    prof = _resolve_profile(profile)
    fmt = str(fmt)
    if fmt not in FORMATS:
        raise MicnError(f"fmt={fmt!r} is not a known raw format; valid choices: {list(FORMATS)}")
    try:
        seed = operator.index(seed)
    except TypeError:
        raise MicnError(f"seed={seed!r} must be a non-negative integer") from None
    if seed < 0:
        raise MicnError(f"seed={seed} must be a non-negative integer (>= 0)")
    name = prof.name.title() if name is None else name
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise MicnError(f"name={name!r} must be a file-name piece like 'Electronics' or 'Musical_Instruments'")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MicnError(f"out_dir={str(out)!r} exists and is not a directory; pass a directory path")
    gt_dir = out / "ground_truth"
    gt_dir.mkdir(parents=True, exist_ok=True)

    streams = np.random.SeedSequence(seed).spawn(6)
    rngs = [np.random.default_rng(s) for s in streams]
    world = _sample_structure(prof, rngs[0])
    users = _sample_users(prof, world, rngs[1])
    reviews = _sample_reviews(prof, world, users, rngs[2])
    ids = _make_ids(prof, rngs[3])
    missing_meta = _plant_missing_meta(prof, world, reviews["item"], rngs[3])

    if fmt == "2014":
        reviews_path, meta_path = out / f"reviews_{name}_5.json.gz", out / f"meta_{name}.json.gz"
    else:
        reviews_path, meta_path = out / f"{name}_5.json.gz", out / f"meta_{name}.json.gz"
    n_review_lines = _write_reviews(reviews_path, fmt, prof, users, reviews, ids, rngs[4])
    n_meta_lines = _write_meta(meta_path, fmt, prof, world, ids, missing_meta, rngs[5])

    item_counts = np.bincount(reviews["item"], minlength=prof.n_items)
    n_items_reviewed = int((item_counts > 0).sum())
    _write_ground_truth(gt_dir, prof, world, users, ids, item_counts, missing_meta)
    world_json = {
        "profile": prof.name,
        "profile_params": asdict(prof),
        "seed": seed,
        "fmt": fmt,
        "name": name,
        "rho": prof.rho,
        "n_topics": prof.n_topics,
        "topic_names": world["topic_names"],
        "counts": {
            "n_users": prof.n_users,
            "n_items": prof.n_items,
            "n_categories": prof.n_categories,
            "n_topics": prof.n_topics,
            "n_reviews": prof.n_reviews,
            "n_review_lines": n_review_lines,
            "n_meta_lines": n_meta_lines,
            "n_missing_meta": int(missing_meta.sum()),
            "n_items_reviewed": n_items_reviewed,
        },
        "item_coverage": n_items_reviewed / prof.n_items,
        "time_range": {
            "first_unix": int(_UNIX_DAY0 + int(reviews["day"].min()) * _SECONDS_PER_DAY),
            "last_unix": int(_UNIX_DAY0 + int(reviews["day"].max()) * _SECONDS_PER_DAY),
        },
        "files": {
            "reviews": reviews_path.name,
            "meta": meta_path.name,
            "users": "ground_truth/users.parquet",
            "items": "ground_truth/items.parquet",
            "categories": "ground_truth/categories.parquet",
        },
        "model": "P(i | u, hist) = P(topic(i) | u, z_last) * P(cat(i) | topic(i)) * P(i | cat(i)); "
        "P(z' | u, z) = rho * 1[z' = z] + (1 - rho) * w_u[z']; empty history: w_u[z']",
    }
    (gt_dir / "world.json").write_text(json.dumps(world_json, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    return WorldSummary(
        profile=prof.name,
        seed=seed,
        fmt=fmt,
        name=name,
        out_dir=out,
        reviews_path=reviews_path,
        meta_path=meta_path,
        ground_truth_dir=gt_dir,
        n_users=prof.n_users,
        n_items=prof.n_items,
        n_categories=prof.n_categories,
        n_topics=prof.n_topics,
        n_reviews=prof.n_reviews,
        n_review_lines=n_review_lines,
        n_meta_lines=n_meta_lines,
        n_missing_meta=int(missing_meta.sum()),
        n_items_reviewed=n_items_reviewed,
        item_coverage=n_items_reviewed / prof.n_items,
        seconds=time.perf_counter() - started,
    )


def _resolve_profile(profile: str | Profile) -> Profile:
    if isinstance(profile, Profile):
        return profile
    if isinstance(profile, str) and profile in PROFILES:
        return PROFILES[profile]
    raise MicnError(f"profile={profile!r} is not a known profile; valid choices: {sorted(PROFILES)} or a Profile")


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


def _zipf(n: int, s: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return p / p.sum()


def _grouped_zipf(group_sizes: np.ndarray, s: float) -> np.ndarray:
    """Zipf-like probabilities within consecutive groups (rank = position in the group), each summing to 1."""
    starts = np.cumsum(group_sizes) - group_sizes
    rank = np.arange(int(group_sizes.sum())) - np.repeat(starts, group_sizes)
    w = 1.0 / (rank + 1.0) ** s
    sums = np.add.reduceat(w, starts)
    return w / np.repeat(sums, group_sizes)


def _grouped_cdf(group_of: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Global CDF for inverse sampling inside groups: element k of group g holds g + cumsum_in_group.

    One `np.searchsorted(cdf, g + u, side="right")` then draws an element of group g for many
    (g, u) at once. The last element of each group is set to exactly g + 1, so rounding can never
    spill a draw into the next group.
    """
    sizes = np.bincount(group_of)
    starts = np.cumsum(sizes) - sizes
    within = np.cumsum(p) - np.repeat(np.cumsum(p)[starts] - p[starts], sizes)
    within[starts + sizes - 1] = 1.0
    return group_of.astype(np.float64) + within


def _sample_structure(prof: Profile, rng: np.random.Generator) -> dict[str, Any]:
    """Topics, categories and items with their probabilities (internal indices are grouped: categories by
    topic, items by category, most popular first; the public ids are scrambled, so this order never shows)."""
    T, C, I = prof.n_topics, prof.n_categories, prof.n_items
    topic_pop = _zipf(T, prof.topic_zipf)
    cats_per_topic = 1 + rng.multinomial(C - T, np.full(T, 1.0 / T))
    cat_topic = np.repeat(np.arange(T), cats_per_topic)  # (C,)
    p_cat = _grouped_zipf(cats_per_topic, prof.category_zipf)  # (C,) P(c | topic(c))
    pop = (topic_pop[cat_topic] * p_cat) ** prof.items_per_category_power
    items_per_cat = 1 + rng.multinomial(I - C, pop / pop.sum())
    item_cat = np.repeat(np.arange(C), items_per_cat)  # (I,)
    p_item = _grouped_zipf(items_per_cat, prof.item_zipf)  # (I,) P(i | cat(i))

    vocab = _VOCAB.get(prof.main_category, _VOCAB["Electronics"])
    deps = vocab["departments"]
    topic_names = [deps[t % len(deps)] + ("" if t < len(deps) else f" {t // len(deps) + 1}") for t in range(T)]
    combos = [f"{m} {n}" for m in vocab["modifiers"] for n in vocab["nouns"]]
    perm = rng.permutation(max(C, len(combos)))
    cat_names = [combos[j % len(combos)] + ("" if j < len(combos) else f" {j // len(combos) + 1}") for j in perm[:C]]
    assert len(set(cat_names)) == C, "category names must be unique (the vocabulary holds a duplicate combination)"
    # Some categories sit one level deeper in the path, so that readers must take the LAST element.
    cat_has_mid = rng.random(C) < 0.25
    cat_noun = [name.split(" ", 1)[1] if " " in name else name for name in cat_names]
    return {
        "topic_pop": topic_pop,
        "cat_topic": cat_topic,
        "p_cat": p_cat,
        "item_cat": item_cat,
        "p_item": p_item,
        "cat_cdf": _grouped_cdf(cat_topic, p_cat),
        "item_cdf": _grouped_cdf(item_cat, p_item),
        "item_rank_in_cat": np.arange(I) - np.repeat(np.cumsum(items_per_cat) - items_per_cat, items_per_cat),
        "topic_names": topic_names,
        "cat_names": cat_names,
        "cat_has_mid": cat_has_mid,
        "cat_noun": cat_noun,
        "vocab": vocab,
    }


def _sample_users(prof: Profile, world: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Topic sets (Gumbel-top-k: sampling without replacement proportional to topic popularity),
    Dirichlet mixture weights and sequence lengths."""
    U, T = prof.n_users, prof.n_topics
    K = min(len(prof.topics_per_user_p), T)
    p_k = np.asarray(prof.topics_per_user_p[:K], dtype=np.float64)
    k_u = 1 + rng.choice(K, size=U, p=p_k / p_k.sum())  # (U,) number of topics held
    log_pop = np.log(world["topic_pop"])
    topics = np.empty((U, K), dtype=np.int32)
    for start in range(0, U, _GUMBEL_CHUNK):
        g = log_pop + rng.gumbel(size=(min(_GUMBEL_CHUNK, U - start), T))  # (n, T)
        top = np.argpartition(-g, K - 1, axis=1)[:, :K] if K < T else np.tile(np.arange(T), (len(g), 1))
        order = np.argsort(-np.take_along_axis(g, top, axis=1), axis=1, kind="stable")
        topics[start : start + len(g)] = np.take_along_axis(top, order, axis=1)
    held = np.arange(K) < k_u[:, None]  # (U, K)
    topics[~held] = -1
    gam = np.where(held, rng.gamma(prof.dirichlet_alpha, size=(U, K)), 0.0)
    gam[:, 0] = np.maximum(gam[:, 0], 1e-300)  # a Gamma draw can underflow to 0 for tiny alpha
    weights = gam / gam.sum(axis=1, keepdims=True)

    # Lengths: the 5-core minimum plus a multinomial share of the rest, capped (one review per day at most).
    rest = prof.n_reviews - prof.min_reviews_per_user * U
    activity = rng.lognormal(0.0, prof.length_sigma, size=U)
    extra = rng.multinomial(rest, activity / activity.sum())
    cap = prof.max_reviews_per_user - prof.min_reviews_per_user
    while (over := extra > cap).any():
        excess = int((extra[over] - cap).sum())
        extra[over] = cap
        room = np.where(extra < cap, activity, 0.0)
        extra += rng.multinomial(excess, room / room.sum())
    lengths = prof.min_reviews_per_user + extra
    return {"topics": topics, "weights": weights, "k": k_u, "lengths": lengths.astype(np.int64)}


def _sample_reviews(
    prof: Profile, world: dict[str, Any], users: dict[str, np.ndarray], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Every review, in (user, time) order: the topic chain, category, item, day and rating."""
    N, U = prof.n_reviews, prof.n_users
    lengths = users["lengths"]
    starts = np.cumsum(lengths) - lengths  # (U,)
    user = np.repeat(np.arange(U, dtype=np.int32), lengths)  # (N,)
    pos = np.arange(N, dtype=np.int64) - starts[user]  # (N,) position within the user's sequence

    # Topic chain: at a "redraw" position the slot is drawn afresh from w_u, elsewhere it is copied
    # from the previous position, i.e. forward-filled from the last redraw (the first always redraws).
    redraw = (pos == 0) | (rng.random(N) >= prof.rho)
    at = np.flatnonzero(redraw)
    cum_w = np.cumsum(users["weights"], axis=1)  # (U, K)
    cum_w[np.arange(cum_w.shape[1]) >= users["k"][:, None] - 1] = 1.0  # exact 1 at and after the last held slot
    u = rng.random(len(at))
    slot_at = (u[:, None] >= cum_w[user[at], :-1]).sum(axis=1)
    slot_full = np.zeros(N, dtype=np.int8)
    slot_full[at] = slot_at
    src = np.maximum.accumulate(np.where(redraw, np.arange(N), 0))
    topic = users["topics"][user, slot_full[src]]  # (N,)

    cat = np.searchsorted(world["cat_cdf"], topic + rng.random(N), side="right").astype(np.int32)
    item = np.searchsorted(world["item_cdf"], cat + rng.random(N), side="right").astype(np.int32)

    # Days: position j plus a scaled cumulative sum of extra gaps keeps days strictly increasing.
    extra = rng.geometric(1.0 / prof.mean_gap_days, size=N) - 1
    extra[pos == 0] = 0
    cum_extra = np.cumsum(extra)
    cum_extra -= cum_extra[starts][user]  # per-user cumulative extra gap (0 at the first review)
    last = starts + lengths - 1
    room = (_N_DAYS - 1) - (lengths - 1)  # the most extra days a user's span can hold
    scale = np.where(cum_extra[last] > room, room / np.maximum(cum_extra[last], 1), 1.0)
    rel_day = pos + np.floor(cum_extra * scale[user]).astype(np.int64)
    span = rel_day[last]
    first_day = np.floor(np.sqrt(rng.random(U)) * (_N_DAYS - span)).astype(np.int64)  # skewed to later years
    day = first_day[user] + rel_day

    rating = (1 + rng.choice(5, size=N, p=_RATING_P)).astype(np.int8)
    return {"user": user, "topic": topic, "cat": cat, "item": item, "day": day, "rating": rating}


def _plant_missing_meta(
    prof: Profile, world: dict[str, Any], item: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Choose reviewed items that get no metadata line. The most popular item of every category always
    keeps its line, so every category still appears in the metadata file."""
    reviewed = np.bincount(item, minlength=prof.n_items) > 0
    candidates = np.flatnonzero(reviewed & (world["item_rank_in_cat"] > 0))
    n = int(round(prof.missing_meta_fraction * int(reviewed.sum())))
    if prof.missing_meta_fraction > 0:
        n = max(n, 1)
    n = min(n, len(candidates))
    missing = np.zeros(prof.n_items, dtype=bool)
    missing[rng.choice(candidates, size=n, replace=False)] = True
    return missing


# --------------------------------------------------------------------------------------------
# Ids (vectorised: digits as uint8 arrays viewed as fixed-width strings)
# --------------------------------------------------------------------------------------------

_B36 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
_B64 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-", dtype=np.uint8)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijection on uint64, so distinct indices give distinct, unsorted ids."""
    x = x.astype(np.uint64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _digits(values: np.ndarray, width: int, alphabet: np.ndarray) -> np.ndarray:
    """(n,) uint64 -> (n, width) uint8 ASCII digits, most significant first."""
    base = np.uint64(len(alphabet))
    v = values.astype(np.uint64).copy()
    out = np.empty((len(v), width), dtype=np.uint8)
    for k in range(width - 1, -1, -1):
        out[:, k] = alphabet[(v % base).astype(np.intp)]
        v //= base
    return out


def _fixed_width(prefix: bytes, digits: np.ndarray) -> np.ndarray:
    """Prefix + digits as a numpy fixed-width bytes array (dtype S<width>)."""
    n, w = digits.shape
    buf = np.empty((n, len(prefix) + w), dtype=np.uint8)
    buf[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    buf[:, len(prefix) :] = digits
    return buf.reshape(-1).view(f"S{len(prefix) + w}")


def _to_polars(fixed: np.ndarray) -> pl.Series:
    """Fixed-width ASCII bytes -> Polars string Series without per-element Python work."""
    width = fixed.dtype.itemsize
    offsets = np.arange(0, (len(fixed) + 1) * width, width, dtype=np.int64)
    arr = pa.LargeStringArray.from_buffers(len(fixed), pa.py_buffer(offsets), pa.py_buffer(fixed.tobytes()))
    return pl.Series(arr).cast(pl.String)


def _make_ids(prof: Profile, rng: np.random.Generator) -> dict[str, Any]:
    """reviewerID = "A" + 13 base-36 chars of a 64-bit mix; asin = "B00" + 7 base-36 chars of an affine
    permutation of [0, 36**7) (the multiplier is coprime to 36, so the map is a bijection)."""
    key = rng.integers(0, 2**63, dtype=np.uint64)
    user_ids = _fixed_width(b"A", _digits(_mix64(np.arange(prof.n_users, dtype=np.uint64) + key), 13, _B36))
    space = 36**7
    mult = int(rng.integers(36**5, 36**6)) | 1
    while mult % 3 == 0:
        mult += 2
    add = int(rng.integers(0, space))
    item_vals = (np.arange(prof.n_items, dtype=np.int64) * mult + add) % space
    item_ids = _fixed_width(b"B00", _digits(item_vals.astype(np.uint64), 7, _B36))
    return {
        "user": user_ids,
        "item": item_ids,
        "user_rank": np.argsort(np.argsort(user_ids, kind="stable"), kind="stable"),
        "item_rank": np.argsort(np.argsort(item_ids, kind="stable"), kind="stable"),
        "user_pl": _to_polars(user_ids),
        "item_pl": _to_polars(item_ids),
    }


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


class _GzipSink:
    """A deterministic gzip file (mtime 0, no file name in the header) compressed in a background thread:
    zlib releases the GIL, so compressing one chunk overlaps with building the next."""

    def __init__(self, path: Path) -> None:
        self._raw = open(path, "wb")
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=_GZIP_LEVEL, mtime=0)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: list[Future[int]] = []

    def write(self, data: bytes) -> None:
        self._pending.append(self._pool.submit(self._gz.write, data))
        while len(self._pending) > 2:  # bound the memory held by queued chunks
            self._pending.pop(0).result()

    def close(self) -> None:
        try:
            for f in self._pending:
                f.result()
            self._gz.close()
        finally:
            self._pool.shutdown()
            self._raw.close()

    def __enter__(self) -> _GzipSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json_pool(values: list[str]) -> pl.Series:
    """JSON-encode a small pool of strings once (ASCII-escaped like the real dumps); rows then gather from it."""
    return pl.Series([json.dumps(v) for v in values], dtype=pl.String)


def _names(rng: np.random.Generator, n: int) -> list[str]:
    """Reviewer display names: plain, initials, and the real dumps' `Name "nickname"` shape."""
    out = []
    for _ in range(n):
        first = _FIRST_NAMES[rng.integers(len(_FIRST_NAMES))]
        last = _LAST_NAMES[rng.integers(len(_LAST_NAMES))]
        kind = rng.integers(6)
        if kind == 0:
            out.append(f"{first} {last[0]}.")
        elif kind == 1:
            out.append(f'{first} {last} "{_NICKNAMES[rng.integers(len(_NICKNAMES))]}"')
        elif kind == 2:
            out.append(first)
        else:
            out.append(f"{first} {last}")
    return out


def _texts(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(_SENTENCES, size=int(rng.integers(1, 4)), replace=False)) for _ in range(n)]


def _write_reviews(
    path: Path,
    fmt: str,
    prof: Profile,
    users: dict[str, np.ndarray],
    reviews: dict[str, np.ndarray],
    ids: dict[str, Any],
    rng: np.random.Generator,
) -> int:
    """Write the reviews file; lines ordered by (asin, reviewerID, time) like the item-grouped real dumps.
    Returns the number of lines written."""
    N, U = prof.n_reviews, prof.n_users
    user, item, day = reviews["user"], reviews["item"], reviews["day"]

    # Per-user and per-review attributes, drawn in index order so that the bytes depend only on the seed.
    name_pool = _names(rng, 400)
    name_frag = pl.Series([""] + [f', "reviewerName": {json.dumps(s)}' for s in name_pool])
    user_name = np.where(rng.random(U) < 0.01, 0, 1 + rng.integers(len(name_pool), size=U))  # ~1% have no name
    text_pool = _texts(rng, 500)
    text_frag = pl.Series([""] + [f', "reviewText": {json.dumps(s)}' for s in text_pool])
    text_idx = np.where(rng.random(N) < 0.001, 0, 1 + rng.integers(len(text_pool), size=N))
    width = max(len(v) for v in _SUMMARIES.values())
    summary_pool = _json_pool([_SUMMARIES[r][k % len(_SUMMARIES[r])] for r in range(1, 6) for k in range(width)])
    summary_idx = (reviews["rating"].astype(np.int64) - 1) * width + rng.integers(width, size=N)
    helpful_total = np.where(rng.random(N) < 0.35, rng.geometric(0.25, size=N), 0)
    helpful_total = np.where(rng.random(N) < 0.003, rng.integers(1000, 5000, size=N), helpful_total)  # a few viral ones
    helpful_yes = rng.binomial(helpful_total, 0.75)
    overall_pool = pl.Series([f"{r}.0" for r in range(1, 6)])
    dates = [_DAY0 + _dt.timedelta(days=d) for d in range(_N_DAYS)]
    review_time_pool = pl.Series([f"{d.month:02d} {d.day}, {d.year}" for d in dates])
    verified = rng.random(N) < 0.8
    styles = _STYLES.get(prof.main_category, _STYLES["Electronics"])
    style_pool = pl.Series([""] + [f', "style": {json.dumps(s)}' for s in styles])
    style_idx = np.where(rng.random(N) < 0.45, 0, 1 + rng.integers(len(styles), size=N))

    key = (ids["item_rank"][item].astype(np.int64) * U + ids["user_rank"][user]) * _N_DAYS + day
    order = np.argsort(key, kind="stable")
    if fmt == "2018":
        # Plant style duplicates: the same review once more, right after itself, with another style.
        dup = rng.random(N) < prof.duplicate_fraction_2018
        rows = np.repeat(order, 1 + dup[order])
        is_copy = np.zeros(len(rows), dtype=bool)
        is_copy[np.flatnonzero(np.diff(rows) == 0) + 1] = True
        row_style = style_idx[rows].copy()
        row_style[is_copy] = 1 + (row_style[is_copy] % len(styles))  # never absent, never the same
    else:
        rows = order
        row_style = style_idx[rows]

    with _GzipSink(path) as sink:
        for lo in range(0, len(rows), _CHUNK_ROWS):
            r = rows[lo : lo + _CHUNK_ROWS]
            u, it = user[r], item[r]
            frame = pl.DataFrame(
                {
                    "uid": ids["user_pl"].gather(u),
                    "asin": ids["item_pl"].gather(it),
                    "name": name_frag.gather(user_name[u]),
                    "text": text_frag.gather(text_idx[r]),
                    "summary": summary_pool.gather(summary_idx[r]),
                    "overall": overall_pool.gather(reviews["rating"][r].astype(np.int64) - 1),
                    "unix": _UNIX_DAY0 + day[r] * _SECONDS_PER_DAY,
                    "rtime": review_time_pool.gather(day[r]),
                    "hy": helpful_yes[r],
                    "ht": helpful_total[r],
                    "verified": verified[r],
                    "style": style_pool.gather(row_style[lo : lo + _CHUNK_ROWS]),
                }
            )
            if fmt == "2014":
                line = pl.concat_str(
                    pl.lit('{"reviewerID": "'), "uid", pl.lit('", "asin": "'), "asin", pl.lit('"'), "name",
                    pl.lit(', "helpful": ['), pl.col("hy").cast(pl.String), pl.lit(", "), pl.col("ht").cast(pl.String),
                    pl.lit("]"), "text", pl.lit(', "overall": '), "overall", pl.lit(', "summary": '), "summary",
                    pl.lit(', "unixReviewTime": '), pl.col("unix").cast(pl.String), pl.lit(', "reviewTime": "'),
                    "rtime", pl.lit('"}'),
                )  # fmt: skip
            else:
                vote = (
                    pl.when(pl.col("ht") >= 2)
                    .then(pl.concat_str(pl.lit(', "vote": "'), _thousands(pl.col("ht")), pl.lit('"')))
                    .otherwise(pl.lit(""))
                )
                line = pl.concat_str(
                    pl.lit('{"overall": '), "overall", vote, pl.lit(', "verified": '),
                    pl.when(pl.col("verified")).then(pl.lit("true")).otherwise(pl.lit("false")),
                    pl.lit(', "reviewTime": "'), "rtime", pl.lit('", "reviewerID": "'), "uid", pl.lit('", "asin": "'),
                    "asin", pl.lit('"'), "style", "name", "text", pl.lit(', "summary": '), "summary",
                    pl.lit(', "unixReviewTime": '), pl.col("unix").cast(pl.String), pl.lit("}"),
                )  # fmt: skip
            buf = io.BytesIO()
            frame.select(line.alias("line")).write_csv(buf, include_header=False, quote_style="never")
            sink.write(buf.getvalue())
    return len(rows)


def _thousands(col: pl.Expr) -> pl.Expr:
    """Integer -> "1,234" (the 2018 dumps' vote strings); values here stay below one million."""
    s = col.cast(pl.String)
    return (
        pl.when(col >= 1000)
        .then(pl.concat_str(s.str.slice(0, s.str.len_chars() - 3), pl.lit(","), s.str.slice(-3)))
        .otherwise(s)
    )


def _write_meta(
    path: Path,
    fmt: str,
    prof: Profile,
    world: dict[str, Any],
    ids: dict[str, Any],
    missing_meta: np.ndarray,
    rng: np.random.Generator,
) -> int:
    """Write one metadata line per item that has metadata, in asin order. Returns the number of lines."""
    I = prof.n_items
    vocab = world["vocab"]
    item_cat, cat_topic = world["item_cat"], world["cat_topic"]
    main = prof.main_category

    # Vectorised per-item draws (all items, in index order, so the stream does not depend on which lack meta).
    brand_idx = rng.integers(len(vocab["brands"]), size=I)
    odd_idx = rng.integers(len(vocab["odd_brands"]), size=I)
    mod_idx = rng.integers(len(vocab["modifiers"]), size=I)
    unit_idx = rng.integers(len(vocab["units"]), size=I)
    model_no = rng.integers(10, 9999, size=I)
    size_no = rng.integers(2, 65, size=I)
    shape = rng.random(I)  # decides the title's shape (apostrophe / inch mark / non-ASCII / plain)
    has_price = rng.random(I) < 0.75
    cents = np.where(rng.random(I) < 0.5, 0.99, rng.integers(0, 100, size=I) / 100)  # half end in .99
    price = np.round(np.floor(np.exp(rng.normal(3.0, 1.0, size=I))) + cents, 2)
    has_brand = rng.random(I) < 0.6
    has_related = rng.random(I) < 0.8
    has_rank = rng.random(I) < 0.85
    rank_value = 1 + np.argsort(np.argsort(-(world["topic_pop"][cat_topic[item_cat]] * world["p_item"]))) * 7
    rank_value = rank_value + rng.integers(0, 7, size=I)
    second_path = rng.random(I) < 0.3
    n_related = rng.integers(0, 9, size=(I, 3)) * (rng.random((I, 3)) < [0.7, 0.8, 0.4])
    n_related[:, 2] = np.minimum(n_related[:, 2], 2)
    # Related items: popular items of the same category, drawn through the same inverse CDF.
    related = np.searchsorted(world["item_cdf"], item_cat[:, None] + rng.random((I, 18)), side="right")
    img = _fixed_width(b"", _digits(rng.integers(0, 2**63, size=I, dtype=np.uint64), 10, _B64))
    price_kind_2018 = rng.random(I)
    rank_is_list = rng.random(I) < 0.5
    date_day = rng.integers(0, _N_DAYS, size=I)

    asins = [a.decode() for a in ids["item"]]
    order = np.argsort(ids["item_rank"])  # asin order
    order = order[~missing_meta[order]]
    # Guarantee the shapes readers must cope with, whatever the seed: the first three lines carry an
    # apostrophe, a non-ASCII character, and both quote kinds.
    for k, forced in zip(range(min(3, len(order))), (0.02, 0.14, 0.07)):
        shape[order[k]] = forced

    lines: list[str] = []
    for i in order.tolist():
        c = int(item_cat[i])
        t = int(cat_topic[c])
        brand = vocab["brands"][brand_idx[i]]
        noun = world["cat_noun"][c]
        mod = vocab["modifiers"][mod_idx[i]]
        unit = vocab["units"][unit_idx[i]]
        s = shape[i]
        if s < 0.05:
            title = f"{brand}'s {mod} {noun} {model_no[i]}"  # apostrophe -> repr uses double quotes
        elif s < 0.09:
            title = f"{brand} {size_no[i]}\" {noun} for Kids' Rooms"  # both quote kinds -> repr escapes
        elif s < 0.12:
            title = f"{brand} {size_no[i]}\" {mod} {noun}"  # an inch mark
        elif s < 0.18:
            title = f"{vocab['odd_brands'][odd_idx[i]]} {mod} {noun}™ {model_no[i]}"  # non-ASCII
        else:
            title = f"{brand} {mod} {noun} {model_no[i]} ({size_no[i]} {unit})"
        path_ = [main, world["topic_names"][t]] + (["Accessories"] if world["cat_has_mid"][c] else [])
        path_.append(world["cat_names"][c])
        rel = related[i]
        nb, nv, nt = n_related[i]
        # dict.fromkeys: de-duplicate while keeping the draw order (real lists never repeat an asin).
        also_bought = [asins[j] for j in dict.fromkeys(rel[:nb].tolist()) if j != i]
        also_viewed = [asins[j] for j in dict.fromkeys(rel[8 : 8 + nv].tolist()) if j != i]
        bought_together = [asins[j] for j in dict.fromkeys(rel[16 : 16 + nt].tolist()) if j != i]
        if fmt == "2014":
            d: dict[str, Any] = {"asin": asins[i], "title": title}
            if has_price[i]:
                d["price"] = float(price[i])
            d["imUrl"] = f"http://ecx.images-amazon.com/images/I/{img[i].decode()}._SY300_.jpg"
            if has_related[i]:
                rd: dict[str, list[str]] = {}
                if also_bought:
                    rd["also_bought"] = also_bought
                if also_viewed:
                    rd["also_viewed"] = also_viewed
                if bought_together:
                    rd["bought_together"] = bought_together
                d["related"] = rd
            if has_rank[i]:
                d["salesRank"] = {main: int(rank_value[i])}
            if has_brand[i]:
                d["brand"] = brand
            d["categories"] = [path_, [main, "Other"]] if second_path[i] else [path_]
            lines.append(repr(d))
        else:
            pk = price_kind_2018[i]
            price_s = f"${price[i]:.2f}" if pk < 0.6 else ("" if pk < 0.95 else _PRICE_JUNK)
            rank_s = f">#{int(rank_value[i]):,} in {main} (See Top 100 in {main})"
            path18 = [html.escape(p, quote=False) for p in path_[:-1]] + [path_[-1]]
            d = {
                "category": path18,
                "tech1": "",
                "description": [f"{title}. {_SENTENCES[i % len(_SENTENCES)]}"] if s < 0.5 else [],
                "fit": "",
                "title": title.replace('"', "&quot;"),
                "also_buy": also_bought,
                "image": [],
                "tech2": "",
                "brand": brand if has_brand[i] else "",
                "feature": [],
                "rank": [rank_s, f">#{int(rank_value[i]) // 50 + 1:,} in {main} > {path18[-1]}"]
                if rank_is_list[i]
                else rank_s,
                "also_view": also_viewed,
                "details": {},
                "main_cat": main,
                "similar_item": "",
                "date": _long_date(int(date_day[i])) if s > 0.7 else "",
                "price": price_s,
                "asin": asins[i],
            }
            lines.append(json.dumps(d))
    with _GzipSink(path) as sink:
        sink.write(("\n".join(lines) + "\n").encode("utf-8") if lines else b"")
    return len(lines)


def _long_date(day: int) -> str:
    d = _DAY0 + _dt.timedelta(days=day)
    return f"{_MONTHS[d.month - 1]} {d.day}, {d.year}"


def _write_ground_truth(
    gt_dir: Path,
    prof: Profile,
    world: dict[str, Any],
    users: dict[str, np.ndarray],
    ids: dict[str, Any],
    item_counts: np.ndarray,
    missing_meta: np.ndarray,
) -> None:
    """users / items / categories Parquet files, each sorted by its id so that lookups can bisect."""
    held = users["topics"] >= 0
    k = users["k"]
    flat_topics = users["topics"][held]  # row-major: each user's held topics in slot order
    flat_weights = users["weights"][held]
    offsets = np.concatenate([[0], np.cumsum(k)]).astype(np.int32)
    u_order = np.argsort(ids["user_rank"])
    user_table = pa.table(
        {
            "user_id": pa.array(ids["user"].astype(str)),
            "topics": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat_topics.astype(np.int32))),
            "weights": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat_weights)),
            "n_reviews": pa.array(users["lengths"]),
        }
    ).take(pa.array(u_order))
    item_cat = world["item_cat"]
    i_order = np.argsort(ids["item_rank"])
    cat_names = np.array(world["cat_names"], dtype=object)
    item_table = pa.table(
        {
            "item_id": pa.array(ids["item"].astype(str)),
            "category": pa.array(cat_names[item_cat].tolist(), type=pa.string()),
            "topic": pa.array(world["cat_topic"][item_cat].astype(np.int32)),
            "p_item_given_category": pa.array(world["p_item"]),
            "has_meta": pa.array(~missing_meta),
            "n_reviews": pa.array(item_counts.astype(np.int64)),
        }
    ).take(pa.array(i_order))
    cat_table = pa.table(
        {
            "category": pa.array(world["cat_names"], type=pa.string()),
            "topic": pa.array(world["cat_topic"].astype(np.int32)),
            "topic_name": pa.array([world["topic_names"][t] for t in world["cat_topic"]], type=pa.string()),
            "p_category_given_topic": pa.array(world["p_cat"]),
            "n_items": pa.array(np.bincount(item_cat, minlength=prof.n_categories).astype(np.int64)),
        }
    ).sort_by("category")
    for table, file in ((user_table, "users"), (item_table, "items"), (cat_table, "categories")):
        pq.write_table(table, gt_dir / f"{file}.parquet", compression="zstd")
