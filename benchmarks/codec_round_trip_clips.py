"""Ground truth as the tiny codecs give it back: each held-out clip's cached latents decoded by
the shipped video and audio codecs and written as `<clip>.mp4`, so that `streamchar eval short
--videos codec=DIR` scores what a generator could reach at best if its latents were perfect
(lip sync, identity, WER through the codecs). A video codec that decodes with the reference
image reads each clip's from the data set the cache was encoded from (or `--data`).

    python benchmarks/codec_round_trip_clips.py --cache runs/latents --clips 40 --out runs/render/codec-gt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from streamchar.codecs.store import load_audio_codec, load_video_codec
from streamchar.config import load_config
from streamchar.data.inspect import load_records
from streamchar.data.latents import LatentCache
from streamchar.data.mp4 import write_mp4
from streamchar.streaming.runner import to_frames


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--split", default="test-unseen")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, help="the data set the cache was encoded from, for the reference images (default: the one the cache names)")
    ap.add_argument("--video-codec", help="video codec directory (default: the shipped one)")
    ap.add_argument("--audio-codec", help="audio codec directory (default: the shipped one); a decoder trained --decoder-only reads the same latents")
    a = ap.parse_args()
    torch.set_num_threads(2)
    cfg = load_config("tiny")
    video, audio = load_video_codec(cfg, a.video_codec).eval(), load_audio_codec(cfg, a.audio_codec).eval()
    cache = LatentCache(a.cache)
    images = {}
    if video.needs_reference:
        data = a.data or Path(cache.settings["data"])
        images = {r["clip_id"]: Path(r["_dir"]) / r["files"]["reference_image"] for r in load_records(data)}
    a.out.mkdir(parents=True, exist_ok=True)
    picked = [i for i, r in enumerate(cache.records) if r["split"] == a.split][: a.clips]
    for i in picked:
        t = cache.tensors(i)
        rec = cache.records[i]
        reference = None
        if video.needs_reference:
            if rec["clip_id"] not in images:
                ap.error(f"{rec['clip_id']} is not in the data set {data}: give --data, the set the cache was encoded from")
            image = np.asarray(Image.open(images[rec["clip_id"]]).convert("RGB"), dtype=np.float32)
            reference = video.prepare_reference(torch.from_numpy(image).permute(2, 0, 1)[None] / 127.5 - 1)
        rgb = to_frames(video.decode(t["video"][None], reference=reference))
        samples = audio.decode(t["audio"][None])[0].numpy()
        n = min(len(samples), int(len(rgb) / cfg.stream.fps * cfg.audio.sample_rate))
        write_mp4(a.out / f"{rec['clip_id']}.mp4", rgb, cfg.stream.fps, samples[:n].astype(np.float32), cfg.audio.sample_rate)
        meta = {"transcript": rec["transcript"], "source": "codec round trip of the cached latents"}
        (a.out / f"{rec['clip_id']}.json").write_text(json.dumps(meta))
    print(f"{len(picked)} clips in {a.out}")


if __name__ == "__main__":
    main()
