"""Which espeak-ng voices can pocketsphinx's en-US model recognise?

WER with a closed-vocabulary bigram LM over 30 test-split Harvard sentences, for each
voice named on the command line (default: the candidates measured for SynthTalk).

    python benchmarks/voices.py en-us+f5 en-us+f2 en-us+adam
"""

import json
import sys

from streamchar.data.harvard import split_sentences
from streamchar.data.speech import Voice, synthesize
from streamchar.evaluation.asr import Recognizer, word_error_rate

DEFAULT = ["en-us+f5", "en-us+f2", "en-us+adam", "en-us+edward", "en-us+michel", "en-us+f3", "en-us+m1", "en-us"]

if __name__ == "__main__":
    names = sys.argv[1:] or DEFAULT
    sentences = split_sentences("test")[:30]
    rec = Recognizer(sentences)
    results = {}
    for name in names:
        hyps = [rec.transcribe(synthesize(s, Voice(name), 24000).audio, 24000) for s in sentences]
        results[name] = round(word_error_rate(sentences, hyps).wer * 100, 1)
        print(f"{name:20s} WER {results[name]:5.1f}%", flush=True)
    print(json.dumps(results))
