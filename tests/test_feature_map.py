"""`feature_map.json` read through its type: the same bytes back, every bad key named, and the
padding and OOV ids the models are built for."""

from __future__ import annotations

import json

import pytest

from micn.data.feature_map import FeatureMap, load_feature_map
from micn.errors import MicnError
from micn.names import FIRST_REAL_ID, OOV_ID, PADDING_ID


@pytest.fixture()
def raw(tiny_samples) -> dict:
    return json.loads((tiny_samples / "feature_map.json").read_text())


def write(tmp_path, value) -> object:
    path = tmp_path / "feature_map.json"
    path.write_text(json.dumps(value))
    return path


def test_the_written_file_is_what_the_type_writes_back(tiny_samples):
    fmap = load_feature_map(tiny_samples)
    assert json.dumps(fmap.to_json(), indent=2) + "\n" == (tiny_samples / "feature_map.json").read_text()
    assert (fmap.padding_id, fmap.oov_id, fmap.first_real_id) == (PADDING_ID, OOV_ID, FIRST_REAL_ID)
    assert fmap.n_items > FIRST_REAL_ID and fmap.splits == {"train": "train.parquet", "valid": "valid.parquet",
                                                           "test": "test.parquet"}
    assert FeatureMap.from_json(fmap.to_json(), "copy") == fmap


@pytest.mark.parametrize(("change", "message"), [
    ({"n_items": "5"}, r"feature_map\.n_items: expected an integer \(got '5'\)"),
    ({"n_users": 1}, r"feature_map\.n_users: input should be greater than or equal to 2"),
    ({"protocol": "mind"}, r"feature_map\.protocol: input should be 'dien' or 'din'"),
    ({"padding_id": 3}, r"feature_map\.padding_id: input should be 0"),
    ({"oov_id": 0}, r"feature_map\.oov_id: input should be 1"),
    ({"warehouse": "/x.duckdb"}, r"feature_map\.warehouse: unknown key"),
])
def test_a_bad_key_is_named_with_the_file(tmp_path, raw, change, message):
    path = write(tmp_path, {**raw, **change})
    with pytest.raises(MicnError, match=message) as e:
        load_feature_map(path)
    assert str(path) in str(e.value)


def test_a_missing_key_or_a_foreign_file_is_named(tmp_path, raw):
    with pytest.raises(MicnError, match=r"key\(s\) max_len missing; the samples were built by another version"):
        load_feature_map(write(tmp_path, {k: v for k, v in raw.items() if k != "max_len"}))
    with pytest.raises(MicnError, match="a feature map is a JSON object, got list"):
        load_feature_map(write(tmp_path, [1, 2]))
    (tmp_path / "feature_map.json").write_text("{")
    with pytest.raises(MicnError, match="not valid JSON"):
        load_feature_map(tmp_path)
    with pytest.raises(MicnError, match="no feature map"):
        load_feature_map(tmp_path / "elsewhere")
