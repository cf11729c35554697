"""How decoded video moves through a chunk: the frame-to-frame change at each of a chunk's 33
positions, from `streamchar bench codec` results, against the ground truth.

    python benchmarks/codec_motion_plot.py --result "first decoder=OLD.json" \
        --result "blending decoder=benchmarks/results/codec-tiny.json" --out benchmarks/results/codec-motion.png

(codec-motion.png compared the first decoder's results, in git history, with the shipped one's.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamchar.errors import StreamcharError
from streamchar.evaluation.bench_codec import plot_change_profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--result", action="append", required=True, help="NAME=bench.json, one per decoder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    results = {}
    for item in args.result:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            raise StreamcharError(f"--result takes NAME=PATH to a codec bench JSON; got {item!r}")
        r = json.loads(Path(path).read_text())
        if "change_by_chunk_position_reconstructed" not in r:
            raise StreamcharError(f"{path} has no change_by_chunk_position_*: rerun `streamchar bench codec` to write them")
        results[name] = r
    print(plot_change_profile(results, args.out))


if __name__ == "__main__":
    main()
