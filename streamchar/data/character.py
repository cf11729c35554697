"""A SynthTalk character: a seed that fixes appearance and voice.

Every visible attribute has a name, so that the clip's prompt can state it and be true.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from streamchar.data.speech import Voice
from streamchar.errors import StreamcharError

Color = tuple[int, int, int]

SKIN: dict[str, Color] = {
    "pale": (244, 219, 200),
    "light": (232, 190, 160),
    "tan": (205, 150, 110),
    "olive": (190, 150, 100),
    "brown": (150, 100, 70),
    "dark brown": (100, 66, 45),
}
HAIR: dict[str, Color] = {
    "black": (30, 26, 26),
    "dark brown": (70, 45, 30),
    "brown": (120, 80, 45),
    "blond": (225, 195, 120),
    "red": (180, 70, 35),
    "grey": (160, 160, 165),
    "blue": (60, 90, 200),
    "pink": (230, 120, 170),
}
CLOTHES: dict[str, Color] = {
    "green": (50, 140, 70),
    "red": (190, 40, 45),
    "blue": (45, 80, 180),
    "yellow": (230, 195, 50),
    "purple": (120, 60, 150),
    "orange": (230, 120, 40),
    "white": (235, 235, 235),
    "black": (35, 35, 40),
    "grey": (120, 120, 125),
    "teal": (30, 140, 140),
}
BACKGROUND: dict[str, Color] = {
    "beige": (220, 205, 175),
    "light blue": (170, 200, 230),
    "light green": (180, 215, 170),
    "grey": (150, 150, 155),
    "dark blue": (40, 55, 95),
    "pink": (230, 185, 195),
    "white": (240, 240, 238),
    "brown": (125, 95, 70),
}
EYES: dict[str, Color] = {
    "brown": (90, 55, 30),
    "blue": (60, 110, 180),
    "green": (60, 130, 80),
    "grey": (110, 120, 130),
}
HAIR_STYLES = ("short", "long", "bob", "bun", "curly", "bald")
GARMENTS = ("sweater", "t-shirt", "jacket", "shirt")
BACKDROPS = ("plain", "gradient", "striped", "framed picture")

# Voices measured with pocketsphinx's en-US model and a closed-vocabulary LM
# (`streamchar bench voices`, results in benchmarks/results/voices.json): only the most
# intelligible are used, so that speech in the data stays intelligible.
FEMALE_VOICES = ("en-us+f5", "en-us+f2")
MALE_VOICES = ("en-us+adam", "en-us+edward")
# the other engines' voices (data/engines.py), by the same measure at most 10% WER
ENGINE_VOICES = {
    "festival": {"woman": ("cmu_us_slt_arctic_hts",), "man": ("kal_diphone",)},
    "flite": {"woman": ("slt",), "man": ("rms", "awb", "kal16")},
}
ENGINES = ("espeak", *ENGINE_VOICES)


def speaking_with(character: Character, voice: str | None) -> Character:
    """The character with its voice replaced by `voice` (engine:name; `synthtalk.voice`), at
    the voice's own pitch and the character's rate; unchanged for None."""
    if voice is None:
        return character
    engine, name = voice.split(":", 1)
    pitch, pitch_range = (50, 50) if engine == "espeak" else (0, 0)  # espeak's middle; the other engines' 0 is the voice's own
    return replace(character, voice=Voice(name=name, pitch=pitch, rate=character.voice.rate, pitch_range=pitch_range, engine=engine))


def engine_voices(engines: tuple[str, ...]) -> set[str]:
    """Every voice the engines give characters, as engine:name."""
    voices = {f"espeak:{v}" for v in FEMALE_VOICES + MALE_VOICES} if "espeak" in engines else set()
    return voices | {f"{e}:{v}" for e in engines if e in ENGINE_VOICES for names in ENGINE_VOICES[e].values() for v in names}


@dataclass(frozen=True)
class Character:
    seed: int
    gender: str  # "woman" | "man"
    skin: str
    hair: str
    hair_style: str
    eyes: str
    garment: str
    clothes: str
    background: str
    backdrop: str
    glasses: bool
    face_width: float  # head half-width / half-height
    head_scale: float
    voice: Voice

    @property
    def id(self) -> str:
        return f"char{self.seed:09d}"

    @property
    def pronoun(self) -> str:
        return "her" if self.gender == "woman" else "his"

    def describe(self) -> str:
        """Noun phrase of what the character looks like, e.g. "a woman with short red hair in a green sweater"."""
        hair = {
            "bald": "a bald head",
            "bob": f"{self.hair} hair in a bob",
            "bun": f"{self.hair} hair in a bun",
        }.get(self.hair_style, f"{self.hair_style} {self.hair} hair")
        glasses = " and glasses" if self.glasses else ""
        article = "an" if self.clothes[0] in "aeiou" else "a"
        garment = f"{article} {self.clothes} {self.garment}"
        return f"a {self.gender} with {hair}{glasses} in {garment}"

    def scene(self) -> str:
        if self.backdrop == "framed picture":
            return f"in front of a {self.background} wall with a framed picture"
        if self.backdrop == "striped":
            return f"in front of a striped {self.background} wall"
        return f"in front of a {self.background} background"

    def to_json(self) -> dict:
        d = asdict(self)
        d["id"] = self.id
        d["voice"] = asdict(self.voice)
        return d


def _pick(rng: np.random.Generator, options):  # noqa: ANN001, ANN202
    keys = list(options)
    return keys[int(rng.integers(len(keys)))]


def make_character(seed: int, engines: tuple[str, ...] = ("espeak",)) -> Character:
    """The character of `seed`; the same seed always gives the same character. With several
    `engines` its voice's engine is drawn too (from a stream of its own, so that its looks and
    an espeak voice stay what they were)."""
    if seed < 0:
        raise ValueError(f"character seed must be >= 0, got {seed}")
    rng = np.random.default_rng([seed, 0x5C4A])
    gender = "woman" if rng.random() < 0.5 else "man"
    styles = HAIR_STYLES if gender == "man" else tuple(s for s in HAIR_STYLES if s != "bald")
    style = _pick(rng, styles)
    if gender == "man" and style in ("bun", "long") and rng.random() < 0.6:
        style = "short"
    hair = _pick(rng, HAIR)
    clothes = _pick(rng, CLOTHES)
    background = _pick(rng, BACKGROUND)
    while background in ("white",) and clothes == "white":
        background = _pick(rng, BACKGROUND)
    names = FEMALE_VOICES if gender == "woman" else MALE_VOICES
    voice = Voice(
        name=names[int(rng.integers(len(names)))],
        pitch=int(rng.integers(40, 66)) if gender == "woman" else int(rng.integers(30, 56)),
        rate=int(rng.integers(150, 186)),
        pitch_range=int(rng.integers(40, 71)),
    )
    if tuple(engines) != ("espeak",):
        voice = _engine_voice(seed, gender, tuple(engines), voice)
    return Character(
        seed=seed,
        gender=gender,
        skin=_pick(rng, SKIN),
        hair=hair,
        hair_style=style,
        eyes=_pick(rng, EYES),
        garment=_pick(rng, GARMENTS),
        clothes=clothes,
        background=background,
        backdrop=_pick(rng, BACKDROPS),
        glasses=bool(rng.random() < 0.25),
        face_width=float(rng.uniform(0.74, 0.9)),
        head_scale=float(rng.uniform(0.92, 1.06)),
        voice=voice,
    )


def _engine_voice(seed: int, gender: str, engines: tuple[str, ...], espeak: Voice) -> Voice:
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise StreamcharError(f"unknown speech engines {unknown or engines}; accepted: {', '.join(ENGINES)}")
    rng = np.random.default_rng([seed, 0xE61])
    engine = engines[int(rng.integers(len(engines)))]
    if engine == "espeak":
        return espeak
    names = ENGINE_VOICES[engine][gender]
    name = names[int(rng.integers(len(names)))]
    pitch = (int(rng.integers(150, 201)) if gender == "woman" else int(rng.integers(95, 131))) if engine == "flite" else 0  # mean F0, Hz
    return Voice(name=name, pitch=pitch, rate=int(rng.integers(155, 191)), pitch_range=0, engine=engine)
