"""XSUM extrapolation splits by topic (ACL Table 4; reference/paper.md §2.3), for users who have the article URLs.

The topic of a BBC article is read from its URL, as the original `topic_url_process.py` does: the first path
segment is the section (`news`, `sport`, ...), the next the subsection (`/news/uk-politics-38456789` -> `uk`,
`/sport/football/38456789` -> `football`). The URLs are in EdinburghNLP/XSum's `XSum-WebArxiveUrls.txt` (one per
article, the BBC id at the end); they are not in the offline data, so these splits cannot be built here.

* `news_to_sports`: train on `news` articles, test on `sport` articles;
* `within_news`: train on the news subsections {world, uk, business}, test on the other news subsections.

Train/dev come from the official train/validation splits, test from the official test split; every article's
topic is decided by its URL alone. The paper subsampled each test set to 8,000 articles with an unseeded
`np.random.choice`; we subsample with a fixed seed (`TEST_SEED`), so our split is reproducible but not theirs.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import numpy as np

from .types import DataError

KINDS = ("news_to_sports", "within_news")
WITHIN_NEWS_TRAIN = ("world", "uk", "business")
TEST_SIZE, TEST_SEED = 8000, 0
_BBC = re.compile(r"https?://(?:www\.)?bbc\.(?:co\.uk|com)(/[^?#\s]*)")


def topic_from_url(url: str) -> tuple[str, str]:
    """(section, subsection) of a BBC article URL (web-archive wrappers allowed); DataError if not a BBC URL."""
    hits = _BBC.findall(url)
    if not hits:
        raise DataError(f"not a BBC article URL: {url!r}")
    parts = [p for p in hits[-1].split("/") if p]
    if not parts:
        raise DataError(f"BBC URL without a path: {url!r}")
    section = parts[0]
    rest = parts[1] if len(parts) > 1 else ""
    sub = re.sub(r"-?\d+$", "", rest).split("-")[0] if rest else ""
    return section, sub


def article_id(url: str) -> str:
    """The BBC id at the end of the URL (XSUM's article id)."""
    m = re.search(r"(\d+)/?$", url.strip())
    if not m:
        raise DataError(f"no article id at the end of {url!r}")
    return m.group(1)


def read_urls(path: Path | str) -> dict[str, tuple[str, str]]:
    """`XSum-WebArxiveUrls.txt` -> {BBC id: (section, subsection)}; a bad line is reported with its number."""
    out = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out[article_id(line)] = topic_from_url(line)
        except DataError as err:
            raise DataError(f"{path}:{n}: {err}") from None
    return out


def side(kind: str, topic: tuple[str, str]) -> str | None:
    """'train', 'test' or None (the article belongs to neither side of split `kind`)."""
    section, sub = topic
    if kind == "news_to_sports":
        return "train" if section == "news" else "test" if section == "sport" else None
    if kind == "within_news":
        if section != "news":
            return None
        return "train" if sub in WITHIN_NEWS_TRAIN else "test"
    raise DataError(f"unknown XSUM extrapolation split {kind!r}; choose one of {KINDS}")


def select(kind: str, part: str, records: Iterable[dict], topics: dict[str, tuple[str, str]]) -> list[dict]:
    """The records of official split part `part` (train/dev/test) that fall on its side of `kind`; the test side
    is subsampled to TEST_SIZE with TEST_SEED. Articles without a URL are an error (never silently dropped)."""
    want = "test" if part == "test" else "train"
    records = list(records)
    missing = [str(r["id"]) for r in records if str(r["id"]) not in topics]
    if missing:
        raise DataError(f"{len(missing)} XSUM articles have no URL (first: {missing[:3]}); the URL file must cover "
                        "the official splits")
    chosen = [r for r in records if side(kind, topics[str(r["id"])]) == want]
    if part == "test" and len(chosen) > TEST_SIZE:
        idx = np.sort(np.random.default_rng(TEST_SEED).choice(len(chosen), TEST_SIZE, replace=False))
        chosen = [chosen[i] for i in idx]
    return chosen
