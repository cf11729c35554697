"""The public-domain Harvard sentences (lists 1-60, ten sentences each) and their splits.

Splits are disjoint by sentence and fixed by list number so that every data set made
with any seed agrees on which sentences are held out.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

SENTENCES_PER_LIST = 10
SPLIT_LISTS: dict[str, range] = {
    "train": range(1, 51),  # lists 1-50: 500 sentences
    "val": range(51, 56),  # lists 51-55: 50 sentences
    "test": range(56, 61),  # lists 56-60: 50 sentences
}


@cache
def harvard_sentences() -> tuple[str, ...]:
    text = resources.files("streamchar.data").joinpath("assets/harvard-train.txt").read_text(encoding="utf-8")
    lines = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(lines) != 60 * SENTENCES_PER_LIST:
        raise RuntimeError(f"harvard-train.txt should hold 600 sentences, found {len(lines)}")
    return lines


def split_sentences(split: str) -> list[str]:
    """Sentences of a split; `test-unseen` uses the test sentences."""
    lists = SPLIT_LISTS["test" if split == "test-unseen" else split]
    all_ = harvard_sentences()
    return [all_[(n - 1) * SENTENCES_PER_LIST + k] for n in lists for k in range(SENTENCES_PER_LIST)]
