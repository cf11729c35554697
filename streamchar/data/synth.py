"""Making a SynthTalk set: a deterministic plan, parallel workers, resumable atomic output, an index.

Layout of a set folder:
    synthtalk.json          how the set was made (seed, clip count, config); checked on resume
    index.json              every finished clip: id, split, character, duration, path
    skipped.json            clips the last run skipped (their voice's engine could not speak the text as written), and why
    shard-00000/clip-000000/{clip.mp4, audio.wav, reference.png, reference_voice.wav, clip.json}
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import as_completed
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

from streamchar.config import Config
from streamchar.data.clip import RECORD, ClipPlan, build_clip, write_clip
from streamchar.data.corpus import corpus_sentences
from streamchar.data.harvard import split_sentences
from streamchar.errors import Interrupted, StreamcharError, UnspeakableText
from streamchar.utils.processes import worker_pool
from streamchar.utils.spoken import spoken_text

FORMAT = "synthtalk"
FORMAT_VERSION = 1
MANIFEST = "synthtalk.json"
INDEX = "index.json"
LOCK = ".lock"
SKIPPED = "skipped.json"  # clips of the last run whose engine could not speak their text as written, and why
SPLITS = ("train", "val", "test", "test-unseen", "open")
# espeak's speaking rate on Harvard sentences, in characters per second; for planning only
_CHARS_PER_SECOND = 15.0


def character_seeds(seed: int, cfg: Config) -> tuple[list[int], list[int]]:
    """Seeds of the training characters and of the characters never seen in training. A seen
    character whose voice is held out (`synthtalk.held_out_voices`) is replaced by a fresh one,
    so that training never hears that voice; unseen characters keep theirs."""
    s = cfg.synthtalk
    rng = np.random.default_rng([seed, 0xC4A2])
    pool = rng.choice(2**31 - 1, size=s.train_characters + s.unseen_characters, replace=False)
    pool = [int(x) for x in pool]
    train, unseen = pool[: s.train_characters], pool[s.train_characters :]
    if s.held_out_voices:
        from streamchar.data.character import engine_voices, make_character

        held, engines, taken = set(s.held_out_voices), tuple(s.engines), set(pool)
        unknown = sorted(held - engine_voices(engines))
        if unknown:
            raise StreamcharError(f"synthtalk.held_out_voices names {unknown}, which are not voices of the engines {list(engines)}; "
                                  f"accepted: {', '.join(sorted(engine_voices(engines)))}")  # fmt: skip
        fresh = np.random.default_rng([seed, 0xC4A3])
        for k, character in enumerate(train):
            while voice_key(make_character(character, engines).voice) in held:
                character = int(fresh.integers(2**31 - 1))
                character = character if character not in taken else train[k]
            taken.add(character)
            train[k] = character
    return train, unseen


def voice_key(voice) -> str:  # noqa: ANN001 - data.speech.Voice
    """A voice's engine and name, as `synthtalk.held_out_voices` names it: "flite:awb"."""
    return f"{voice.engine}:{voice.name}"


def _estimate_seconds(sentences: list[str]) -> float:
    return sum(len(spoken_text(x)) for x in sentences) / _CHARS_PER_SECOND + 0.4 * len(sentences)


def text_pool(split: str, cfg: Config) -> list[str]:
    """The sentences a split's clips speak: Harvard's by list, or the open-English corpus's."""
    sources = tuple(cfg.synthtalk.text)
    if split == "open" and "chatterbot" not in sources:
        return []
    return split_sentences(split) if sources == ("harvard",) else corpus_sentences(split, sources)


def plan_set(clips: int, seed: int, cfg: Config, target_seconds: float | None = None) -> list[ClipPlan]:
    """The whole set, decided up front from `seed` alone, so that workers and resumes agree."""
    if clips <= 0:
        raise StreamcharError(f"--clips must be a positive number of clips, got {clips}")
    s = cfg.synthtalk
    rng = np.random.default_rng([seed, 0x9A17])
    counts = {
        "test-unseen": int(clips * s.unseen_fraction + 0.5),
        "val": int(clips * s.val_fraction + 0.5),
        "test": int(clips * s.test_fraction + 0.5),
        "open": int(clips * s.open_fraction + 0.5),
    }
    counts["train"] = clips - sum(counts.values())
    splits = np.array([name for name in SPLITS for _ in range(counts[name])])
    splits = splits[rng.permutation(clips)]
    train_chars, unseen_chars = character_seeds(seed, cfg)
    pools = {name: text_pool(name, cfg) for name in SPLITS}
    order = {name: list(rng.permutation(len(pools[name]))) for name in SPLITS}
    cursor = dict.fromkeys(SPLITS, 0)
    char_order = {"seen": list(rng.permutation(len(train_chars))), "unseen": list(rng.permutation(len(unseen_chars)))}
    used = {"seen": 0, "unseen": 0}

    def take(split: str) -> str:
        pool, idx = pools[split], order[split]
        sentence = pool[idx[cursor[split] % len(idx)]]
        cursor[split] += 1
        return sentence

    plans = []
    budget = s.max_seconds - 0.8  # lead-in and tail silence
    for i in range(clips):
        split = str(splits[i])
        kind = "unseen" if split == "test-unseen" else "seen"
        chars = unseen_chars if kind == "unseen" else train_chars
        character = chars[char_order[kind][used[kind] % len(chars)]]
        used[kind] += 1
        want = int(rng.integers(s.min_sentences, s.max_sentences + 1)) if target_seconds is None else s.max_sentences
        sentences = [take(split)]
        while len(sentences) < want:
            nxt = take(split)
            enough = target_seconds is not None and _estimate_seconds(sentences) >= target_seconds
            if enough or _estimate_seconds([*sentences, nxt]) > budget:
                break
            sentences.append(nxt)
        reference: list[str] = []
        for _ in range(len(pools[split])):
            if _estimate_seconds(reference) >= s.reference_voice_seconds:
                break
            cand = take(split)
            if cand not in sentences and cand not in reference:
                reference.append(cand)
        plans.append(
            ClipPlan(
                clip_id=f"clip-{i:06d}",
                index=i,
                split=split,
                character_seed=character,
                sentences=sentences,
                reference_sentences=reference,
                seed=int(rng.integers(2**31 - 1)),
                shard=f"shard-{i // s.clips_per_shard:05d}",
            )
        )
    return plans


def _manifest(clips: int, seed: int, cfg: Config, target_seconds: float | None) -> dict:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "seed": seed,
        "clips": clips,
        "target_seconds": target_seconds,
        "preset": cfg.preset,
        "video": cfg.video.model_dump(),
        "audio": cfg.audio.model_dump(),
        "stream": cfg.stream.model_dump(),
        "synthtalk": cfg.synthtalk.model_dump(),
    }


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise StreamcharError(f"cannot write to output folder {out}: {e.strerror or e}") from None


def _prepare_output(out: Path, manifest: dict) -> None:
    path = out / MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = None
        if not isinstance(old, dict):
            raise StreamcharError(f"{path} is damaged; remove the folder or choose another --out")
        if old != manifest:
            diff = sorted(k for k in manifest if old.get(k) != manifest[k])
            raise StreamcharError(
                f"{out} holds a SynthTalk set made with other settings ({', '.join(diff)} differ); "
                "rerun with the same settings to resume, or choose another --out"
            )
    else:
        _atomic_json(path, manifest)
    for stale in out.glob("shard-*/.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _atomic_json(path: Path, data: dict | list) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def clip_dir(out: Path, plan: ClipPlan) -> Path:
    return out / plan.shard / plan.clip_id


def _work(args: tuple[ClipPlan, Config, str]) -> tuple[str, float, str | None]:
    """A clip made and written: (id, seconds, None); or (id, 0, why) where its voice's engine
    cannot speak its text as written, which skips the clip and lets the set go on."""
    plan, cfg, out = args
    try:
        clip = build_clip(plan, cfg)
    except UnspeakableText as e:
        return plan.clip_id, 0.0, str(e)
    except StreamcharError as e:
        raise StreamcharError(f"{plan.clip_id}: {e}") from None
    try:
        final = clip_dir(Path(out), plan)
        final.parent.mkdir(parents=True, exist_ok=True)
        write_clip(clip, final, cfg)
    except OSError as e:
        raise StreamcharError(f"{plan.clip_id}: could not write the clip: {e.strerror or e}") from None
    return plan.clip_id, float(clip["record"]["duration"]), None


def write_index(out: Path) -> list[dict]:
    """Index of every finished clip in the set (rebuilt from the clip records)."""
    entries = []
    for rec_path in sorted(out.glob(f"shard-*/clip-*/{RECORD}")):
        try:
            rec = json.loads(rec_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise StreamcharError(f"{rec_path} is damaged ({e}); delete its clip folder and rerun to remake it") from None
        entries.append(
            {
                "clip_id": rec["clip_id"],
                "split": rec["split"],
                "character_id": rec["character_id"],
                "duration": rec["duration"],
                "words": len(rec["words"]),
                "path": str(rec_path.parent.relative_to(out)),
            }
        )
    _atomic_json(out / INDEX, {"format": FORMAT, "version": FORMAT_VERSION, "clips": entries})
    return entries


@contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One writer per set folder: a second run on the same folder is refused, not interleaved."""
    with open(out / LOCK, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StreamcharError(f"another `streamchar data synth` is writing {out}; wait for it or choose another --out") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def synthesize_set(
    out: str | Path,
    clips: int,
    seed: int,
    cfg: Config,
    workers: int | None = None,
    target_seconds: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Make (or finish making) a SynthTalk set. Returns a summary with timing.

    Ctrl-C raises `Interrupted` after the workers have stopped; finished clips stay and
    the same call resumes."""
    out = Path(out)
    plans = plan_set(clips, seed, cfg, target_seconds)
    _check_writable(out)
    with _exclusive(out):
        _prepare_output(out, _manifest(clips, seed, cfg, target_seconds))
        todo = [p for p in plans if not (clip_dir(out, p) / RECORD).exists()]
        done = len(plans) - len(todo)
        if on_progress:
            on_progress(done, len(plans))
        workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
        t0 = time.perf_counter()
        seconds = 0.0
        skipped: dict[str, str] = {}

        def took(result: tuple[str, float, str | None]) -> float:
            if result[2] is not None:
                skipped[result[0]] = result[2]
            return result[1]

        try:
            if workers == 1:
                for p in todo:
                    seconds += took(_work((p, cfg, str(out))))
                    done += 1
                    if on_progress:
                        on_progress(done, len(plans))
            else:
                pool = worker_pool(workers)
                try:
                    futures = [pool.submit(_work, (p, cfg, str(out))) for p in todo]
                    for f in as_completed(futures):
                        seconds += took(f.result())
                        done += 1
                        if on_progress:
                            on_progress(done, len(plans))
                finally:
                    # on an error or Ctrl-C: drop queued clips, let running ones finish their atomic write
                    pool.shutdown(wait=True, cancel_futures=True)
        except KeyboardInterrupt:
            finished = len(write_index(out))
            raise Interrupted(
                f"stopped with {finished} of {len(plans)} clips finished; finished clips are kept, rerun the same command to resume"
            ) from None
        except BaseException:
            with suppress(StreamcharError):  # the original error is the one to report
                write_index(out)
            raise
        entries = write_index(out)
        _atomic_json(out / SKIPPED, dict(sorted(skipped.items())))
    wall = time.perf_counter() - t0
    return {
        "out": str(out),
        "clips": len(entries),
        "made_now": len(todo) - len(skipped),
        "skipped": len(skipped),
        "resumed_from": len(plans) - len(todo),
        "wall_seconds": wall,
        "made_seconds_of_video": seconds,
        "clips_per_second": len(todo) / wall if wall > 0 and todo else 0.0,
        "workers": workers,
    }
