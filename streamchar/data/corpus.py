"""SynthTalk's text: open English from packages that install offline, split by source document.

Sources (licences in docs/data-card.md):
- `harvard`: the public-domain Harvard sentences, kept for comparability, split by list as before;
- `everyday`: the project's own templates filled by Faker (names, times, dates, money, counts);
- `wordnet`: WordNet 3.0's example sentences (Debian `wordnet-base`);
- `fortunes`: quotations and sayings from Debian `fortunes`, the topical files only;
- `chatterbot`: ChatterBot's English dialogues (PyPI `chatterbot-corpus`), held out entirely as
  the `open` split: conversation of the kind a viewer types, from a source never trained on.

A document (a fortune, a dialogue, a synset, a Harvard list, one filled template) goes wholly to
one split by a hash of its name, so the split never depends on a seed or on the other sources.
Every sentence is kept only if the normaliser leaves it speakable, short enough for a clip, free
of markup and of the words on the blocklist; duplicates are kept once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from streamchar.data.everyday import everyday_sentences
from streamchar.data.harvard import SENTENCES_PER_LIST, SPLIT_LISTS, harvard_sentences
from streamchar.errors import StreamcharError
from streamchar.utils.text import normalize_words

OPEN_SOURCE = "chatterbot"
SOURCES = ("harvard", "everyday", "wordnet", "fortunes", OPEN_SOURCE)
SPLITS = ("train", "val", "test", "open")
HELD_OUT_SHARE = {"val": 0.04, "test": 0.04}  # of each trained source's documents
EVERYDAY_SENTENCES = 6000
MIN_WORDS, MAX_WORDS = 3, 28  # spoken words; 28 words are about 9 s of speech, well inside a 20 s clip
FORTUNE_FILES = ("cookie", "education", "food", "fortunes", "goedel", "humorists", "kids", "law", "literature", "love", "magic",
                 "medicine", "miscellaneous", "news", "paradoxum", "people", "pets", "platitudes", "riddles", "science",
                 "songs-poems", "sports", "tao", "wisdom", "work")  # fmt: skip
CHATTERBOT_SKIP = ("coding.yml",)  # source code read aloud is not speech
FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")
_MARKUP = re.compile(r"[<>{}\[\]\\|_^~*`=]|https?:|www\.|\.(?:com|org|net)\b|@\w", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')]?\s+(?=[\"'(]?[A-Z])")


@dataclass(frozen=True)
class Sentence:
    text: str  # as typed (digits, symbols): the normaliser speaks it
    source: str
    document: str


@cache
def _blocklist() -> frozenset[str]:
    text = resources.files("streamchar.data").joinpath("assets/blocklist.txt").read_text(encoding="utf-8")
    return frozenset(w for line in text.splitlines() if not line.startswith("#") for w in line.split())


def speakable(text: str, words: list[str]) -> bool:
    """Whether a sentence (`words`: its spoken words) may be spoken in SynthTalk: no markup, a
    length a clip holds, nothing on the blocklist, no characters outside Latin text."""
    if _MARKUP.search(text) or any(ord(c) > 0x24FF for c in text):
        return False
    return MIN_WORDS <= len(words) <= MAX_WORDS and not (set(words) & _blocklist())


def _split_of(source: str, document: str) -> str:
    if source == OPEN_SOURCE:
        return "open"
    if source == "harvard":
        number = int(document.split("-")[1])
        return next(name for name, lists in SPLIT_LISTS.items() if number in lists)
    h = int.from_bytes(hashlib.sha256(f"{source}/{document}".encode()).digest()[:8], "big") / 2**64
    return "val" if h < HELD_OUT_SHARE["val"] else "test" if h < HELD_OUT_SHARE["val"] + HELD_OUT_SHARE["test"] else "train"


def _sentences_of(block: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(" ".join(block.split())) if s.strip()]


def harvard_source() -> Iterator[Sentence]:
    for i, s in enumerate(harvard_sentences()):
        yield Sentence(s, "harvard", f"list-{i // SENTENCES_PER_LIST + 1}")


def everyday_source() -> Iterator[Sentence]:
    for i, s in enumerate(everyday_sentences(EVERYDAY_SENTENCES, seed=0)):
        yield Sentence(s, "everyday", f"filled-{i}")


def _package_file(path: Path, package: str) -> Path:
    if not path.exists():
        raise StreamcharError(f"{path} is missing: SynthTalk's open-English text reads it from Debian's {package} "
                              f"(apt install {package}; scripts/install.sh installs it)")  # fmt: skip
    return path


def wordnet_source() -> Iterator[Sentence]:
    """WordNet's quoted usage examples, one synset a document."""
    for pos in ("noun", "verb", "adj", "adv"):
        path = _package_file(WORDNET_DIR / f"data.{pos}", "wordnet-base")
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # the licence header
            gloss = line.split("|", 1)[1]
            for example in re.findall(r'"([^"]+)"', gloss):
                text = example.strip().rstrip(";,")
                if len(text.split()) < 4 or not text[0].isalpha():
                    continue
                text = text[0].upper() + text[1:]
                yield Sentence(text if text[-1] in ".!?" else text + ".", "wordnet", f"{pos}-{line.split(' ', 1)[0]}")


def fortunes_source() -> Iterator[Sentence]:
    """The topical fortune files, attributions and dialogue markers dropped, one fortune a document."""
    _package_file(FORTUNES_DIR / "wisdom", "fortunes")
    for name in FORTUNE_FILES:
        path = FORTUNES_DIR / name
        if not path.exists():
            continue
        for k, entry in enumerate(path.read_text(encoding="utf-8", errors="replace").split("\n%\n")):
            lines = [ln for ln in entry.splitlines() if not ln.strip().startswith(("--", "-- "))]
            if any(re.match(r"\s*[A-Z][\w .]{0,20}:\s", ln) for ln in lines):
                continue  # dialogue or a definition list
            for s in _sentences_of(" ".join(lines)):
                yield Sentence(s, "fortunes", f"{name}-{k}")


def chatterbot_source() -> Iterator[Sentence]:
    import yaml

    try:
        root = resources.files("chatterbot_corpus").joinpath("data/english")
    except ModuleNotFoundError:
        raise StreamcharError("SynthTalk's open split reads chatterbot-corpus: pip install 'streamchar[train]'") from None
    for item in sorted(root.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".yml") or item.name in CHATTERBOT_SKIP:
            continue
        data = yaml.safe_load(item.read_text(encoding="utf-8")) or {}
        for k, dialogue in enumerate(data.get("conversations", [])):
            for turn in dialogue:
                for s in _sentences_of(str(turn)):
                    yield Sentence(s, OPEN_SOURCE, f"{item.stem}-{k}")


READERS = {"harvard": harvard_source, "everyday": everyday_source, "wordnet": wordnet_source, "fortunes": fortunes_source,
           OPEN_SOURCE: chatterbot_source}  # fmt: skip


@cache
def corpus(sources: tuple[str, ...] = SOURCES) -> dict[str, tuple[Sentence, ...]]:
    """Every kept sentence of `sources`, by split, in a fixed order; a sentence met twice is kept
    in the first place it is met (sources in `SOURCES` order)."""
    seen: set[str] = set()
    out: dict[str, list[Sentence]] = {name: [] for name in SPLITS}
    for source in sources:
        if source not in READERS:
            raise StreamcharError(f"unknown text source {source!r}; sources: {', '.join(SOURCES)}")
        for s in READERS[source]():
            words = normalize_words(s.text)
            key = " ".join(words)
            if key in seen or not speakable(s.text, words):
                continue
            seen.add(key)
            out[_split_of(s.source, s.document)].append(s)
    return {name: tuple(v) for name, v in out.items()}


def corpus_sentences(split: str, sources: tuple[str, ...] = SOURCES) -> list[str]:
    """The typed sentences of a split (`test-unseen` speaks the test sentences, as with Harvard)."""
    name = "test" if split == "test-unseen" else split
    if name not in SPLITS:
        raise StreamcharError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}, test-unseen")
    return [s.text for s in corpus(tuple(sources))[name]]


def corpus_stats(sources: tuple[str, ...] = SOURCES) -> dict[str, dict]:
    """Sentences, words and distinct words (spoken form) by split, by source and in all; for the
    open split, how many of its distinct words training never has."""
    rows: dict[str, dict] = {}
    vocab: dict[str, set[str]] = {}
    for split, sentences in corpus(tuple(sources)).items():
        for s in sentences:
            words = normalize_words(s.text)
            for key in ("all", split, f"source/{s.source}"):
                row = rows.setdefault(key, {"sentences": 0, "words": 0})
                row["sentences"] += 1
                row["words"] += len(words)
                vocab.setdefault(key, set()).update(words)
    for key, row in rows.items():
        row["distinct_words"] = len(vocab[key])
    if "open" in rows:
        rows["open"]["distinct_words_not_in_train"] = len(vocab["open"] - vocab.get("train", set()))
    return rows
