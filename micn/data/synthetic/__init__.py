"""A seeded synthetic "Amazon world" with planted multiple interests.

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
    served      each item serves one topic s_i (its interest): with probability `kappa` its
                category's topic tau(c_i), otherwise a topic drawn by popularity pi independently
                of the category (which may be tau(c_i) again), so P(s_i != tau(c_i)) =
                (1 - kappa) (1 - pi_tau(c_i)) (before the anchor rule below): a "cables" item can
                serve gaming or photography. Stream `interests`, only when kappa < 1.
                Within a topic, P(i | t) = 1[s_i = t] P(c_i | tau(c_i)) P(i | c_i) / Z_t,
                Z_t = sum_j 1[s_j = t] P(c_j | tau(c_j)) P(j | c_j): the item's popularity in its own
                category tree, renormalised over the items serving t. Every topic keeps an item:
                a topic left empty by the draws gets back its anchor (the most popular item of its
                most popular category), repeated until none is empty. At kappa = 1 (the default)
                s_i = tau(c_i) and P(i | t) = P(c_i | t) P(i | c_i), and no draw is taken from the
                `interests` stream: item ids carry no interest signal beyond their category.
    users       each user holds 1-4 topics (probabilities `topics_per_user_p`), drawn without
                replacement proportionally to pi (Gumbel-top-k), with Dirichlet(`dirichlet_alpha`)
                mixture weights w_u.
    sequences   z_1 ~ w_u; z_{j+1} = z_j with probability rho, else z_{j+1} ~ w_u (which may
                pick z_j again), so P(z' | u, z) = rho * 1[z' = z] + (1 - rho) * w_u[z'];
                i_j ~ P(i | z_j) (the items serving z_j, above); c_j = c(i_j). At kappa = 1 this
                is drawn as c_j ~ P(c | z_j), i_j ~ P(i | c_j), the same law.
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

The metadata's category path names the category's own department tau(c), not the served topic:
the raw files never show s_i; it is world structure, in the ground truth's `items.parquet` (the
history-only ceiling counts it as public, like P(i | c), since a model can learn it from item ids).

Everything per review is vectorised numpy (inverse-CDF sampling through one global
`searchsorted` with per-group offsets, forward fill of topic switches with
`np.maximum.accumulate`); lines are assembled by Polars string expressions and gzip-compressed
in a background thread, so the `electronics` profile (1.7M reviews) takes well under a minute.
Per-item Python work is limited to the metadata lines.

Modules, in the order a world is made:
    profiles      `Profile` (sizes and knobs), `PROFILES`, the calendar
    world         `World`, the typed sampled world, and `RandomStreams` (one stream per part)
    catalogue     topics, categories, items, their served topics and their probabilities
    sequences     users (topic sets, weights, lengths) and every review
    ids           reviewerIDs and asins
    releases      one writer per release format, built on `reviews` and `meta` (the line shapes)
    ground_truth  the oracle's Parquet tables
    summary       `WorldSummary`, whose serialisation is `ground_truth/world.json`
    vocab, sink   the word lists of the text fields; deterministic gzip output
"""

from __future__ import annotations

import dataclasses
import errno
import operator
import re
import time
from pathlib import Path

from micn.data.synthetic.ground_truth import write_ground_truth
from micn.data.synthetic.profiles import PROFILES, SECONDS_PER_DAY, UNIX_DAY0, Profile
from micn.data.synthetic.releases import WRITERS, ReleaseFiles
from micn.data.synthetic.summary import GROUND_TRUTH_DIR, WorldSummary
from micn.data.synthetic.world import RandomStreams, World, sample_world
from micn.errors import MicnError
from micn.names import FORMATS

__all__ = ["check_kappa", "check_name", "generate_world"]


def generate_world(
    profile: str | Profile,
    out_dir: str | Path,
    seed: int = 0,
    format: str = "2014",
    name: str | None = None,
    kappa: float | None = None,
) -> WorldSummary:
    """Generate a synthetic world and write its raw files and ground truth under `out_dir`.

    Files written (`<Name>` = `name` or `profile.name.title()`):
      format "2014": `reviews_<Name>_5.json.gz` (JSON lines) and `meta_<Name>.json.gz`
                     (one Python dict literal per line, parse with `ast.literal_eval`);
      format "2018": `<Name>_5.json.gz` and `meta_<Name>.json.gz` (both strict JSON lines);
      always:        `ground_truth/{users,items,categories}.parquet` and `ground_truth/world.json`.
    `kappa` (in [0, 1]) overrides the profile's (None: keep it; the built-in profiles have 1.0).
    The same (profile, seed, format, name, kappa) always gives byte-identical files, and kappa = 1
    gives the files of a call without it.
    """
    started = time.perf_counter()
    prof, seed, format, name, out = _checked_arguments(profile, out_dir, seed, format, name)
    if kappa is not None:
        prof = dataclasses.replace(prof, kappa=check_kappa(kappa))
    streams = RandomStreams.from_seed(seed)
    world = sample_world(prof, streams)
    try:
        (out / GROUND_TRUTH_DIR).mkdir(parents=True, exist_ok=True)
        files = WRITERS[format](world, out, name, streams)
        write_ground_truth(out / GROUND_TRUTH_DIR, world)
        summary = _summary(world, seed, format, name, out, files, started)
        summary.write()
    except OSError as e:
        raise _write_error(e, out) from None
    return summary


def _checked_arguments(
    profile: str | Profile, out_dir: str | Path, seed: int, format: str, name: str | None
) -> tuple[Profile, int, str, str, Path]:
    """The arguments, validated and normalised; MicnError names the bad one and the valid choices."""
    prof = _resolve_profile(profile)
    format = str(format)
    if format not in FORMATS:
        raise MicnError(f"format={format!r} is not a known raw format; valid choices: {list(FORMATS)}")
    try:
        seed = operator.index(seed)
    except TypeError:
        raise MicnError(f"seed={seed!r} must be a non-negative integer") from None
    if seed < 0:
        raise MicnError(f"seed={seed} must be a non-negative integer (>= 0)")
    name = prof.name.title() if name is None else check_name(name)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MicnError(f"out_dir={str(out)!r} exists and is not a directory; pass a directory path")
    return prof, seed, format, name, out


def check_kappa(kappa: float) -> float:
    """`kappa` as a float if it is a number in [0, 1] (MicnError naming it otherwise)."""
    if isinstance(kappa, bool) or not isinstance(kappa, int | float) or not (0.0 <= kappa <= 1.0):
        raise MicnError(f"kappa={kappa!r} must be a number in [0, 1] (the probability that an item serves "
                        "its category's topic; 1 = the world without item-level interest signal)")
    return float(kappa)


def check_name(name: str) -> str:
    """`name` if it can be the category piece of the file names (callers check before any work)."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise MicnError(f"name={name!r} must be a file-name piece like 'Electronics' or 'Musical_Instruments'")
    return name


def _resolve_profile(profile: str | Profile) -> Profile:
    if isinstance(profile, Profile):
        return profile
    if isinstance(profile, str) and profile in PROFILES:
        return PROFILES[profile]
    raise MicnError(f"profile={profile!r} is not a known profile; valid choices: {sorted(PROFILES)} or a Profile")


def _summary(
    world: World, seed: int, format: str, name: str, out: Path, files: ReleaseFiles, started: float
) -> WorldSummary:
    day = world.reviews.day
    return WorldSummary(
        profile=world.profile,
        seed=seed,
        format=format,
        name=name,
        topic_names=tuple(world.catalogue.topic_names),
        n_review_lines=files.n_review_lines,
        n_meta_lines=files.n_meta_lines,
        n_missing_meta=int(world.missing_meta.sum()),
        n_items_reviewed=int((world.item_counts > 0).sum()),
        first_unix=int(UNIX_DAY0 + int(day.min()) * SECONDS_PER_DAY),
        last_unix=int(UNIX_DAY0 + int(day.max()) * SECONDS_PER_DAY),
        reviews_file=files.reviews_path.name,
        meta_file=files.meta_path.name,
        out_dir=out,
        seconds=time.perf_counter() - started,
    )


def _write_error(e: OSError, out: Path) -> MicnError:
    """A failed write as one paragraph naming the file and what would fix it."""
    where = e.filename or out
    if e.errno == errno.ENOSPC:
        why = "disk full; free some space or pass another --out"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "cannot write there (read-only or no permission); pass a writable --out"
    else:
        why = f"{e.strerror or e}; check the output folder"
    return MicnError(f"{where}: writing the synthetic world failed: {why}.")
