"""The leakage and accounting checks of a samples build (`sql/checks/samples_*.sql`), each on
tables with a planted fault, and a failing check stopping the build before anything is written."""

from __future__ import annotations

import duckdb
import pytest

from micn.data.samples import tables
from micn.data.samples.build import build_samples
from micn.data.samples.checks import CHECKS, run_check
from micn.errors import MicnError
from tests.helpers import HAND_FRACTIONS, HAND_MAX_LEN


# --- leakage / accounting checks on planted bad tables -----------------------------------------


@pytest.fixture
def planted():
    """A connection holding the tables the checks read, with one good pair per user."""
    con = duckdb.connect()
    con.execute("create table stg_behaviors as select * from (values "
                "(1, 'u1', 11, 100, 1, 0), (1, 'u1', 12, 200, 2, 1), (1, 'u1', 13, 300, 3, 2), "
                "(2, 'u2', 11, 100, 1, 0), (2, 'u2', 14, 200, 2, 1), (2, 'u2', 15, 200, 3, 1)) "
                "as t(user_key, user_id, item_key, ts, pos, n_before)")
    con.execute("create table int_users as select * from (values (1, 'u1', null::varchar), (2, 'u2', null)) "
                "as t(user_key, user_id, drop_reason)")
    con.execute("create table sample_pairs as select * from (values "
                "('train', 1, 'u1', 3, 300, 13, 14, [11, 12], [14, 15], 1, 2), "
                "('test', 2, 'u2', 3, 200, 15, 12, [11], [13], 1, 1)) "
                "as t(split, user_key, user_id, pos, ts, item_key, neg_item_key, hist_item_keys, hist_neg_keys, "
                "hist_first_pos, hist_len)")
    yield con
    con.close()


PARAMS = {"protocol": "dien", "max_len": 3}


def test_checks_pass_on_good_tables(planted):
    for name in CHECKS:
        assert run_check(planted, name, PARAMS).n_offending == 0, name


def test_history_check_catches_planted_leakage(planted):
    # u2's history claims its same-ts behavior (pos 2, ts 200 = the target's ts)
    planted.execute("update sample_pairs set hist_item_keys = [11, 14], hist_neg_keys = [13, 13] where user_id = 'u2'")
    result = run_check(planted, "samples_history_before_target", PARAMS)
    assert result.n_offending == 1
    row = dict(zip(result.columns, result.examples[0]))
    assert row["user_id"] == "u2" and row["hist_pos"] == 2 and row["hist_ts"] == 200
    assert row["problem"] == "history event at or after the target time"
    # the target itself slipped into u1's history under a wrong position
    planted.execute("update sample_pairs set hist_item_keys = [11, 13] where user_id = 'u1'")
    problems = {dict(zip(r.columns, e))["problem"] for r in [run_check(planted, "samples_history_before_target", PARAMS)]
                for e in r.examples}
    assert "history item is not the behavior at its position" in problems


def test_split_check_catches_a_user_in_two_splits(planted):
    planted.execute("insert into sample_pairs select 'valid', 1, 'u1', 2, 200, 12, 13, [11], [15], 1, 1")
    result = run_check(planted, "samples_user_in_one_split", PARAMS)
    assert result.n_offending == 1 and result.examples[0][0] == "u1"
    assert dict(zip(result.columns, result.examples[0]))["splits"] == "train, valid"


def test_negative_check_catches_equal_negatives(planted):
    planted.execute("update sample_pairs set neg_item_key = item_key where user_id = 'u1'")
    planted.execute("update sample_pairs set hist_neg_keys = [11] where user_id = 'u2'")
    result = run_check(planted, "samples_negative_not_positive", PARAMS)
    assert sorted((e[1], e[3]) for e in result.examples) == [
        ("u1", "target negative equals the positive"), ("u2", "a history negative equals the clicked item at its position")]


def test_din_negative_check_catches_negative_in_history(planted):
    planted.execute("update sample_pairs set neg_item_key = 11 where user_id = 'u1'")  # in u1's history
    planted.execute("update sample_pairs set neg_item_key = 14 where user_id = 'u2'")  # reviewed by u2, not in history
    result = run_check(planted, "samples_din_negative_not_in_history", PARAMS)
    assert sorted((e[1], e[4]) for e in result.examples) == [
        ("u1", "negative is in the history"), ("u2", "negative was reviewed by the user")]


def test_accounting_check_catches_missing_and_extra_pairs(planted):
    planted.execute("update int_users set drop_reason = 'fewer than 2 behaviors' where user_id = 'u2'")
    planted.execute("delete from sample_pairs where user_id = 'u1'")
    result = run_check(planted, "samples_user_accounting", PARAMS)
    problems = {dict(zip(result.columns, e))["user_id"]: dict(zip(result.columns, e))["problem"] for e in result.examples}
    assert problems == {"u1": "kept user has the wrong number of pairs", "u2": "dropped user has samples"}


def test_a_failing_check_stops_the_build_and_writes_nothing(hand_db, tmp_path, monkeypatch):
    real = tables.materialize

    def leaky(con, table, model, params):
        real(con, table, model, params)
        if table == "sample_pairs":  # plant a negative equal to its positive
            con.execute("update sample_pairs set neg_item_key = item_key "
                        "where split = 'train' and user_key = (select min(user_key) from sample_pairs where split = 'train')")

    monkeypatch.setattr(tables, "materialize", leaky)
    with pytest.raises(MicnError, match=r"samples_negative_not_positive .* found 1 offending rows.*Nothing was written"):
        build_samples(hand_db, "hand", tmp_path / "out", max_len=HAND_MAX_LEN, **HAND_FRACTIONS)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
