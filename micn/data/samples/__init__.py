"""The DuckDB warehouse → training samples: sequences, splits, negatives, vocabularies.

    job = SamplesJob("electronics", max_len=10, config=SamplesConfig(protocol="dien", seed=0))
    build_job(db, job, samples_dir(root, job.dataset, job.max_len)) -> SamplesReport
    build_samples(db, dataset, out_dir, protocol="dien", max_len=20, seed=0,
                  valid_frac=0.1, test_frac=0.1) -> SamplesReport     # the same, keyword form

The settings travel as one typed job: `SamplesConfig` (the `samples` section of params.yaml,
validated in `micn.config`: protocol, seed, the two fractions) plus the dataset and its history
length `max_len`, which are per dataset and so not in that section.

Protocols (a sample pair = the target behavior as positive + one sampled negative target, both
with the same history):
    dien  (default; the protocol behind the MICN paper's numbers, from the DIEN reference code)
          per user, the LAST behavior is the target and the ones before it the history; one
          popularity-weighted negative (a random review row's item) != the positive; users are
          split BY USER into train / valid / test.
    din   (DIN reference code) every behavior with one strictly before it is a target with the
          behaviors before it as history, with one UNIFORM negative the user never reviewed; each
          user's last pair is the test pair; for the validation users (a seeded `valid_frac` of
          the users with a training pair) their last training pair goes to valid instead of train.
Both: the history holds the most recent `max_len` behaviors strictly BEFORE the target's
timestamp (same-timestamp behaviors are left out, see `sql/samples/intermediate/int_histories.sql`),
and beside every history position a popularity-weighted negative != the clicked item, for DIEN's
auxiliary loss. Users with fewer than 2 behaviors, or with all behaviors at one timestamp, are
dropped and counted; din also drops users who reviewed every item (no negative exists).

Where the work is done:
* `sql/samples/` (staging → intermediate → marts) builds everything on integer keys in an
  in-memory DuckDB that ATTACHes the warehouse READ-ONLY: the warehouse is never written.
  Randomness is `hash(user_key, position, seed, salt, attempt)` mapped to a review row
  (popularity-weighted, the `popularity_negatives` macro of `sql/samples/macros.sql`) or an item
  key (uniform), with rejection by re-hashing (attempts 0..7, then a deterministic fallback):
  reproducible for any thread count, for a fixed DuckDB version (its `hash` may differ between
  DuckDB releases) and the same warehouse (keys are ranks of raw ids). SQL runs through the one
  runner, `micn.data.sql`, with bound parameters.
* `sql/checks/samples_*.sql` (leakage and accounting) run on every build, before anything is
  written; each returns offending rows and any row is a `MicnError`.
* Polars pads each chunk of pairs (left padding, most recent last), numpy lookup arrays map the
  integer keys to vocabulary indexes, and pyarrow writes one Parquet row group per chunk with
  fixed settings, so the same arguments give byte-identical files.

Vocabularies (user, item, category) are fitted on the TRAINING split only: 0 = padding,
1 = out-of-vocabulary (ids seen only in valid/test), real ids from 2 by descending training
frequency, ties by raw id (`sql/samples/marts/vocab_*.sql`). An id is in the vocabulary when it
occurs anywhere in a training row, sampled negatives included (as in DIEN's `generate_voc.py`).

Outputs in `out_dir` (by convention `micn.data.layout.samples_dir(root, dataset, max_len)`),
everything training and `micn interests` read, so that they never open the warehouse or the raw
folder: `train|valid|test.parquet` (columns in `encode.sample_schema`; rows by raw user id, then
time, each pair as its positive row then its negative row), `feature_map.json` (the data↔model
contract), `vocab_user|vocab_item|vocab_category.parquet` (raw id → index, frequency),
`negative_sampler.parquet` (review rows per raw item id: the distribution of the negatives, for
the oracle AUC), `samples_summary.parquet` (what was kept and dropped), and for a synthetic world
`oracle/`: a byte copy of the world's `ground_truth/` files (found through the warehouse's
`ingest_log`), named by the feature map's `oracle` (null for real data).
Every file is written into a temporary folder inside `out_dir` and renamed at the end: a failure
(a full disk, a read-only folder) leaves the samples already in `out_dir` untouched and no
partial file.

Modules, in the order a build uses them:
    job        `SamplesJob` (what to build), `SamplesReport` (what was built), the summary counts
    warehouse  checks of the warehouse file and dataset before any work; the world's ground truth
    tables     the SQL models in build order, on an in-memory connection
    checks     the leakage and accounting checks (`sql/checks/`)
    encode     sample_pairs → the Parquet sample files (lookups, padding, fixed row groups)
    contract   the `feature_map.json` dict
    files      the names of the files a build writes
    publish    staging folder, atomic renames, one error per failed write
    build      `build_job` and `build_samples`, which tie the above together
"""
