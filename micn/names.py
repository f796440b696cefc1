"""The project's closed vocabularies, each defined once and imported everywhere else.

Plain tuples and bytes only: reading `params.yaml`, the ingest and the report import this module
without torch. `tests/test_config.py` checks the names against the registries they mirror
(`micn.models.BACKBONES`, `micn.data.synthetic.profiles.PROFILES`).
"""

BACKBONE_NAMES = ("wide_deep", "din", "dien")
PROFILE_NAMES = ("tiny", "default", "electronics", "books")
VARIANTS = ("base", "control", "micn")  # control: the width-matched backbone without L_micn
ABLATIONS = ("no_item_ids", "one_category")  # information ablations (micn.data.dataset.SampleSet.ablated)
# What L_micn learns to predict: `target`, the paper's (history -> the clicked target of a positive
# row); `history`, MIND's feed (a prefix of the row's history -> the behaviour that follows it).
SUPERVISIONS = ("target", "history")
PROTOCOLS = ("dien", "din")  # how negatives are drawn (micn.data.samples)
FORMATS = ("2014", "2018")  # the Amazon review releases whose files are read (and imitated by the generator)
SPLITS = ("train", "valid", "test")
DUCKDB_MAGIC = b"DUCK"  # bytes 8..11 of every DuckDB database file (after an 8-byte checksum)

# Index conventions of every vocabulary (the `feature_map.json` contract): padding fills empty
# history positions, OOV stands for every value outside the training vocabulary, real ids follow.
PADDING_ID = 0
OOV_ID = 1
FIRST_REAL_ID = 2
