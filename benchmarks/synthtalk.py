"""SynthTalk generation benchmark; same as `streamchar bench synth`.

    python benchmarks/synthtalk.py --clips 24 --seconds 10 --out benchmarks/results/synth-tiny.json
"""

from streamchar.cli.main import app

if __name__ == "__main__":
    app(["bench", "synth", *__import__("sys").argv[1:]])
