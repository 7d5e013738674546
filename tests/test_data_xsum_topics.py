"""XSUM extrapolation splits (ACL Table 4) from article URLs: topic parsing, both split kinds, the 8,000-article
test cap with a fixed seed, and clear errors for a missing URL file, a bad URL line or an article without a URL."""
from __future__ import annotations

import json

import pytest

from prefixtune.data import DataError, load_split
from prefixtune.data import xsum_topics as xt

ARCHIVE = "http://web.archive.org/web/20161231120000/"
URLS = {1: "http://www.bbc.com/news/uk-politics-1", 2: "http://www.bbc.com/news/world-europe-2",
        3: "http://www.bbc.co.uk/news/health-3", 4: "http://www.bbc.com/sport/football/4",
        5: "http://www.bbc.com/news/technology-5", 6: "http://www.bbc.com/news/business-6",
        7: "http://www.bbc.com/culture/story-7"}


@pytest.mark.parametrize(("url", "topic"), [
    ("http://www.bbc.com/news/uk-politics-38456789", ("news", "uk")),
    (ARCHIVE + "http://www.bbc.co.uk/sport/football/38456789", ("sport", "football")),
    ("http://www.bbc.com/news/38456789", ("news", "")),
    ("https://bbc.com/news/world-asia-china-38456789", ("news", "world")),
])
def test_topic_from_url(url, topic):
    assert xt.topic_from_url(url) == topic
    assert xt.article_id(url) == "38456789"


def test_not_a_bbc_url():
    with pytest.raises(DataError, match="not a BBC article URL"):
        xt.topic_from_url("http://example.com/news/1")


def _folder(tmp_path, ids_by_split):
    for split, ids in ids_by_split.items():
        rows = [{"document": f"article {i}", "summary": f"summary {i}", "id": i} for i in ids]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(ARCHIVE + URLS[i] + "\n" for i in sorted(URLS)))
    return urls


def test_both_split_kinds(tmp_path, monkeypatch):
    urls = _folder(tmp_path, {"train": [1, 2, 3, 4, 5, 6, 7], "test": [1, 2, 3, 4, 5, 6, 7]})
    monkeypatch.setenv("PREFIXTUNE_XSUM_URLS", str(urls))
    ids = lambda split: [g.meta["id"] for g in load_split("xsum", split, source=tmp_path).groups]  # noqa: E731
    assert ids("news_to_sports_train") == ["1", "2", "3", "5", "6"]   # every news article, no sport/culture
    assert ids("news_to_sports_test") == ["4"]                          # sport only
    assert ids("within_news_train") == ["1", "2", "6"]                  # uk, world, business
    assert ids("within_news_test") == ["3", "5"]                        # the other news subsections


def test_test_side_is_capped_reproducibly(monkeypatch):
    monkeypatch.setattr(xt, "TEST_SIZE", 3)
    topics = {str(i): ("sport", "football") for i in range(10)}
    recs = [{"id": i} for i in range(10)]
    a = xt.select("news_to_sports", "test", recs, topics)
    assert len(a) == 3 and a == xt.select("news_to_sports", "test", recs, topics)
    assert len(xt.select("news_to_sports", "train", recs, {k: ("news", "uk") for k in topics})) == 10  # uncapped


def test_clear_errors(tmp_path, monkeypatch):
    _folder(tmp_path, {"train": [1, 2, 99]})
    monkeypatch.setenv("PREFIXTUNE_XSUM_URLS", str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="XSum-WebArxiveUrls.txt.*PREFIXTUNE_XSUM_URLS"):
        load_split("xsum", "within_news_train", source=tmp_path)
    monkeypatch.setenv("PREFIXTUNE_XSUM_URLS", str(tmp_path / "urls.txt"))
    with pytest.raises(DataError, match="1 XSUM articles have no URL.*99"):
        load_split("xsum", "within_news_train", source=tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text(URLS[1] + "\nhttp://example.com/x/5\n")
    with pytest.raises(DataError, match=r"bad.txt:2: not a BBC article URL"):
        xt.read_urls(bad)
    with pytest.raises(DataError, match="unknown XSUM extrapolation split"):
        xt.side("sideways", ("news", "uk"))
