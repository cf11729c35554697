"""A closed-vocabulary bigram language model in ARPA format, built from the evaluated transcripts.

pocketsphinx needs a language model; restricting it to the transcripts' words makes the
WER measure how intelligible the speech is rather than how large the vocabulary is
(docs/architecture.md, "SynthTalk"). Absolute discounting, interpolated with an add-one unigram.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable

from streamchar.utils.text import normalize_words

BOS, EOS = "<s>", "</s>"


def bigram_arpa(transcripts: Iterable[str], vocabulary: set[str] | None = None, discount: float = 0.5) -> str:
    """ARPA text of a bigram model over `transcripts` (words outside `vocabulary` are dropped)."""
    sentences = []
    for t in transcripts:
        words = [w for w in normalize_words(t) if vocabulary is None or w in vocabulary]
        if words:
            sentences.append([BOS, *words, EOS])
    if not sentences:
        raise ValueError("no transcript words to build a language model from")
    uni = Counter(w for s in sentences for w in s[1:])
    big: dict[str, Counter[str]] = defaultdict(Counter)
    for s in sentences:
        for a, b in zip(s[:-1], s[1:]):
            big[a][b] += 1
    vocab = sorted(uni)
    total = sum(uni.values())
    p_uni = {w: (uni[w] + 1) / (total + len(vocab)) for w in vocab}

    bigram_lines = []
    backoff: dict[str, float] = {}
    for a in sorted(big):
        followers = big[a]
        count = sum(followers.values())
        lam = discount * len(followers) / count
        seen_p = 0.0
        seen_uni = 0.0
        for b in sorted(followers):
            p = max(followers[b] - discount, 0.0) / count + lam * p_uni[b]
            seen_p += p
            seen_uni += p_uni[b]
            bigram_lines.append(f"{math.log10(p):.6f} {a} {b}")
        rest = 1.0 - seen_uni
        backoff[a] = math.log10(max(1.0 - seen_p, 1e-12) / rest) if rest > 1e-12 else -99.0

    lines = ["\\data\\", f"ngram 1={len(vocab) + 1}", f"ngram 2={len(bigram_lines)}", "", "\\1-grams:"]
    lines.append(f"-99.000000 {BOS} {backoff.get(BOS, 0.0):.6f}")
    for w in vocab:
        bo = f" {backoff[w]:.6f}" if w in backoff and w != EOS else ""
        lines.append(f"{math.log10(p_uni[w]):.6f} {w}{bo}")
    lines += ["", "\\2-grams:", *bigram_lines, "", "\\end\\", ""]
    return "\n".join(lines)
