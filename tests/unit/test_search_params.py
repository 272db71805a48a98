"""Search request parameters: filters, cursors, fusion settings and the committed Serve config (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from actors.filters import MetaTable, SearchFilter
from cluster.ground.settings import SearchSettings
from serve_apps.errors import InvalidRequest
from serve_apps.search.args import SearchArgs, fusion_params
from serve_apps.search.fusion import DEFAULT_PARAMS
from serve_apps.search.params import (
    Cursor,
    build_search_filter,
    decode_cursor,
    encode_cursor,
    fingerprint,
)
from storage.index_feed import NO_DATE, MetaBatch

ROOT = Path(__file__).resolve().parents[2]


def test_filter_values_split_on_commas_and_repeat() -> None:
    flt = build_search_filter(
        lang=["en,ar", " fr "], source=[], category=["POLITICS"], since=None, until=None
    )
    assert flt == SearchFilter(languages=("en", "ar", "fr"), categories=("POLITICS",))
    assert build_search_filter(lang=[], source=[], category=[], since=None, until=None).is_empty


def test_dates_are_utc_unless_they_say_otherwise_and_must_be_ordered() -> None:
    naive = build_search_filter(lang=[], source=[], category=[], since=datetime(2018, 5, 1), until=None)
    assert naive.since == int(datetime(2018, 5, 1, tzinfo=UTC).timestamp())
    with pytest.raises(InvalidRequest, match="since must be earlier"):
        build_search_filter(
            lang=[], source=[], category=[], since=datetime(2018, 6, 1), until=datetime(2018, 5, 1)
        )
    with pytest.raises(InvalidRequest, match="at most"):
        build_search_filter(
            lang=[",".join(f"l{i}" for i in range(60))], source=[], category=[], since=None, until=None
        )


def test_cursor_round_trip_and_refusals() -> None:
    digest = fingerprint("q", "hybrid", "document", 10, SearchFilter())
    token = encode_cursor(Cursor(20, digest))
    assert decode_cursor(token, expected=digest, max_depth=1000) == Cursor(20, digest)
    other = fingerprint("q", "vector", "document", 10, SearchFilter())
    with pytest.raises(InvalidRequest, match="another query"):
        decode_cursor(token, expected=other, max_depth=1000)
    for bad in (
        "",
        "!!!",
        "bm90IGpzb24",
        encode_cursor(Cursor(-5, digest)),
        encode_cursor(Cursor(2000, digest)),
    ):
        with pytest.raises(InvalidRequest, match="cursor"):
            decode_cursor(bad, expected=digest, max_depth=1000)


def test_fusion_settings_override_the_measured_default() -> None:
    assert fusion_params(SearchSettings()).method == DEFAULT_PARAMS.method
    custom = fusion_params(SearchSettings(fusion="rrf", keyword_weight=2.0))
    assert custom.method == "rrf" and custom.weights is not None and custom.weights[0] == 2.0


def test_metadata_table_matches_by_document_id() -> None:
    table = MetaTable()
    published = np.array([0, 0, NO_DATE], dtype=np.int64)
    table.upsert(
        [5, 6, 7], MetaBatch(["en", "ar", None], ["bbc", "bbc", None], ["SPORT", None, None], published)
    )
    ids = np.array([5, 6, 7, 8])
    assert table.matches(ids, SearchFilter(languages=("AR",))).tolist() == [False, True, False, False]
    assert table.matches(ids, SearchFilter(sources=("bbc",))).tolist() == [True, True, False, False]
    assert table.matches(ids, SearchFilter()).tolist() == [True, True, True, False]
    assert table.matches(ids, SearchFilter(since=-1)).tolist() == [True, True, False, False]
    table.delete([5])
    assert table.matches(ids, SearchFilter()).tolist() == [False, True, True, False]


def test_committed_serve_config_is_valid_for_the_builder() -> None:
    from serve_apps.cms.args import CmsArgs
    from serve_apps.trends.args import TrendsArgs

    config = yaml.safe_load((ROOT / "serve_apps" / "serve_config.yaml").read_text())
    apps = {app["name"]: app for app in config["applications"]}
    assert sorted(apps) == ["cms", "search", "topics", "trends"]
    search, cms = apps["search"], apps["cms"]
    args = SearchArgs.model_validate(search["args"])
    assert args.index.shards >= 1 and args.search.default_mode in ("vector", "keyword", "hybrid")
    assert CmsArgs.model_validate(cms["args"]).scheduler and cms["route_prefix"] == "/v1/cms"
    for name in ("trends", "topics"):
        TrendsArgs.model_validate(apps[name]["args"])
        assert apps[name]["route_prefix"] == f"/v1/{name}"
