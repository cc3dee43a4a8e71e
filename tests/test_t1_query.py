"""The query model and its text form, without any backend."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from elliptio import Query, QueryError
from elliptio.ids import id_time, new_id
from elliptio.query import compile_sql, glob_to_regex, id_floor, parse_time


def test_parse_the_story_query():
    q = Query.parse("user=andy,since=10d,file=*.txt,tag=*dataset*")
    assert q.user == "andy" and q.files == ("*.txt",) and q.tags == ("*dataset*",)
    assert abs((datetime.now(UTC) - q.since) - timedelta(days=10)) < timedelta(seconds=5)


def test_text_form_round_trips():
    q = Query.parse('user=a*,file=*.csv,file=data/*,tag=x,type=model,info.lr=0.1,'
                    'info.name="a,b",info.n="10",based_on=' + new_id() + ",transitive=true,depth=4")
    assert Query.parse(q.to_text()) == q


@pytest.mark.parametrize("value", ["plain", "a,b", " padded ", '"wrapped"', 'say "hi"',
                                   "*.csv", "x=y"])
def test_text_items_quote_what_needs_it_and_round_trip(value):
    from elliptio.query import text_item

    item = text_item("text", value)
    assert item.startswith('text="') == ("," in value or value != value.strip()
                                         or value.startswith('"'))
    assert Query.parse(item) == Query.build(text=value)  # as if given as a keyword
    assert Query.parse(text_item("file", value)).files == (value,)


@pytest.mark.parametrize("value", ['a",b', 'one " quote'])
def test_a_value_the_text_form_cannot_hold_is_a_query_error(value):
    from elliptio.query import text_item

    with pytest.raises(QueryError, match="cannot hold"):
        text_item("text", value)
    with pytest.raises(QueryError, match="cannot hold"):
        Query(text=value).to_text()


def test_info_values_are_yaml_scalars_unless_quoted():
    assert dict(Query.parse("info.epochs=10").info) == {"epochs": "10"}
    assert dict(Query.parse('info.epochs="10"').info) == {"epochs": '"10"'}
    assert dict(Query.parse("info.ok=true").info) == {"ok": "true"}


def test_info_keys_are_matched_as_written():
    q = Query.parse("info.learningRate=0.1,info.batch-size=32,info.Model.Depth_x=3")
    assert dict(q.info) == {"learningRate": "0.1", "batch-size": "32", "Model.Depth_x": "3"}
    assert q == Query.build(info={"learningRate": 0.1, "batch-size": 32,
                                  "Model": {"Depth_x": 3}})
    assert Query.parse(q.to_text()) == q
    # the query's own keys are read in any case, with - for _; the info. prefix too
    parent = new_id()
    loose = Query.parse(f"USER=andy,Based-On={parent},INFO.batch-size=32")
    assert (loose.user, loose.based_on, loose.info) == ("andy", parent, (("batch-size", "32"),))
    # the forms built from fields (CLI --info, the web page) take the key as typed
    assert Query.from_fields(info=[("learningRate", "0.1")]).info == (("learningRate", "0.1"),)


def test_ids_are_whole_matches():
    from elliptio.config import USER_RE, valid_user
    from elliptio.errors import ConfigError
    from elliptio.ids import ID_RE, check_id

    aid = new_id()
    for junk in ("\n", "x", " ", "\n\n"):
        assert ID_RE.match(aid + junk) is None and ID_RE.search(aid + junk) is None
        assert ID_RE.fullmatch(aid + junk) is None
        with pytest.raises(QueryError, match="malformed cursor"):
            Query.build(after=aid + junk)
    for junk in ("\n", " ", "/x", "\n\n"):
        with pytest.raises(ConfigError):
            valid_user("andy" + junk)
        assert USER_RE.match("andy" + junk) is None
    assert ID_RE.fullmatch(aid) and Query.build(after=aid).after == aid
    # deliberately stripped first: what a person types or pastes
    assert check_id(aid.upper() + "\n") == aid
    assert Query.build(based_on=" " + aid + "\n").based_on == aid
    with pytest.raises(Exception, match="malformed"):
        check_id(aid + "x")


def test_nested_info_flattens_to_dotted_keys():
    q = Query.build(info={"model": {"layers": 3}})
    assert q.info == (("model.layers", "3"),)


@pytest.mark.parametrize("text", [
    "user", "nokey=1", "since=yesterday-ish", "file=[abc", 'text="unclosed', "limit=x",
    "based_on=not-an-id", "transitive=maybe", "depth=0", "info.=3", "order=random",
])
def test_malformed_queries_raise_query_error(text):
    with pytest.raises(QueryError):
        Query.parse(text)


def test_times():
    assert parse_time("2026-11-24", "t") == datetime(2026, 11, 24, tzinfo=UTC)
    assert parse_time("2026-11-24", "t", end_of_day=True) == datetime(2026, 11, 25, tzinfo=UTC)
    assert parse_time("2026-11-24T10:00:00+02:00", "t") == datetime(2026, 11, 24, 8, tzinfo=UTC)
    assert datetime.now(UTC) - parse_time("3h", "t") > timedelta(hours=2, minutes=59)


def test_id_floor_orders_like_ids():
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    before = new_id(int(t.timestamp() * 1000) - 1)
    at = new_id(int(t.timestamp() * 1000))
    assert before < id_floor(t) <= at
    assert abs(id_time(at) - t) < timedelta(milliseconds=1)


@pytest.mark.parametrize("pattern,yes,no", [
    ("*.txt", ["a.txt", ".txt"], ["a.txt.gz", "a.TXT"]),
    ("data_?.csv", ["data_1.csv"], ["data_10.csv"]),
    ("[ab]*", ["apple", "b"], ["cat"]),
    ("[^ab]*", ["cat"], ["apple"]),
    ("a.b+c", ["a.b+c"], ["aXb+c", "a.bbc"]),
])
def test_glob_regex_has_shell_semantics(pattern, yes, no):
    rx = re.compile(glob_to_regex(pattern))
    assert all(rx.match(s) for s in yes)
    assert not any(rx.match(s) for s in no)


def test_sql_is_parameterised():
    sql, params = compile_sql(Query.parse("user=x'; DROP TABLE artifacts;--"))
    assert "DROP" not in sql and "x'; DROP TABLE artifacts;--" in params
