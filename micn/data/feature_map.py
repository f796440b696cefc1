"""`feature_map.json`: the contract between a samples folder and every model trained on it.

    fmap = load_feature_map(samples_dir)      # FeatureMap, validated; a bad file is a MicnError naming it
    fmap.n_items, fmap.oracle, fmap.first_real_id
    fmap.to_json()                            # the plain dict written to the file (and into model.pt)

The samples stage writes it (`FeatureMap.to_json` gives the file's bytes, in field order); training,
evaluation and `micn interests` read it only through this type, so a misspelt key is an error at
load time instead of a KeyError deep in a run. Its padding and OOV ids must be the ones the models
are built for (`micn.names.PADDING_ID`, `OOV_ID`): a folder that says otherwise is refused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, Strict

from micn.config import from_mapping, validated
from micn.errors import MicnError
from micn.names import FIRST_REAL_ID, OOV_ID, PADDING_ID, PROTOCOLS, SPLITS

FILE_NAME = "feature_map.json"
VOCABULARIES = ("user", "item", "category")  # the vocab_<kind>.parquet files

Int = Annotated[int, Strict()]
Vocabulary = Annotated[int, Strict(), Field(ge=FIRST_REAL_ID)]  # padding and OOV rows included
Text = Annotated[str, Strict()]


@validated
class FeatureMap:
    """One samples folder's vocabulary sizes, protocol and files (field order = the file's key order)."""

    dataset: Text
    protocol: Literal[PROTOCOLS]
    seed: Int
    max_len: Annotated[int, Strict(), Field(ge=1)]
    valid_frac: float
    test_frac: float
    n_users: Vocabulary
    n_items: Vocabulary
    n_categories: Vocabulary
    padding_id: Literal[PADDING_ID]
    oov_id: Literal[OOV_ID]
    vocab_order: Text
    history: Text
    splits: dict[Literal[SPLITS], Text]
    columns: dict[Text, Text]
    vocab_files: dict[Literal[VOCABULARIES], Text]
    counts: dict[Text, Any]  # users kept / dropped, samples per split (the samples stage's accounting)
    oracle: Text | None  # the synthetic world's ground truth, relative to the samples folder; None on real data
    source: Text  # the warehouse file's name: provenance only

    @property
    def first_real_id(self) -> int:
        """The smallest index of a real item, category or user (below it: padding and OOV)."""
        return max(self.padding_id, self.oov_id) + 1

    def identity(self) -> dict[str, Any]:
        """What two feature maps must share for a model trained on one to read samples of the other."""
        return {k: getattr(self, k) for k in ("dataset", "protocol", "seed", "max_len", "n_users", "n_items",
                                              "n_categories", "counts")}

    def to_json(self) -> dict[str, Any]:
        """The file's JSON object (plain types only: `model.pt` stores it for `torch.load(weights_only=True)`)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, data: Any, where: str | Path) -> FeatureMap:
        """Validate a decoded `feature_map.json`; every missing, unknown or wrong key is named with `where`."""
        if not isinstance(data, dict):
            raise MicnError(f"{where}: a feature map is a JSON object, got {type(data).__name__}; rebuild the samples.")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data]
        if missing:
            raise MicnError(f"{where}: key(s) {', '.join(missing)} missing; the samples were built by another version, "
                            "rebuild them (`micn samples`).")
        return from_mapping(cls, data, f"{where}: feature_map")


def load_feature_map(path: str | Path) -> FeatureMap:
    """Read and validate `feature_map.json` (`path` is the file or its samples folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MicnError(f"{path}: no feature map; build the samples first (`micn samples`).") from None
    except json.JSONDecodeError as e:
        raise MicnError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); rebuild the samples.") from None
    return FeatureMap.from_json(data, path)
