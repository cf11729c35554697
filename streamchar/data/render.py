"""Procedural drawing of a SynthTalk character's upper body, one frame per pose.

Drawn with PIL primitives at twice the output size and box-filtered down, which
gives anti-aliased edges while keeping each frame cheap to draw (PIL primitives and one box-filter resize).
The character's right hand is on the viewer's left, as when facing a camera.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from streamchar.data.character import BACKGROUND, CLOTHES, EYES, HAIR, SKIN, Character, Color
from streamchar.data.motion import PoseTrack

SUPERSAMPLE = 2


def _shade(c: Color, f: float) -> Color:
    return tuple(int(max(0, min(255, round(v * f)))) for v in c)  # type: ignore[return-value]


def _mix(a: Color, b: Color, t: float) -> Color:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))  # type: ignore[return-value]


class CharacterRenderer:
    """Draws one character at a fixed output size; the background is drawn once."""

    def __init__(self, character: Character, height: int, width: int):
        self.c = character
        self.h, self.w = height, width
        self.H, self.W = height * SUPERSAMPLE, width * SUPERSAMPLE
        self.u = min(self.H, self.W)
        self.skin = SKIN[character.skin]
        self.hair = HAIR[character.hair]
        self.cloth = CLOTHES[character.clothes]
        self.eye = EYES[character.eyes]
        self.lips = _mix(_shade(self.skin, 0.75), (170, 40, 50), 0.45)
        rng = np.random.default_rng([character.seed, 0xB6])
        self._curls = rng.uniform(0, 2 * np.pi, size=14)
        self._picture = (tuple(int(v) for v in rng.integers(40, 220, size=3)), bool(rng.random() < 0.5))
        self.background = self._draw_background()

    # ---------------------------------------------------------------- static parts
    def _draw_background(self) -> Image.Image:
        base = np.array(BACKGROUND[self.c.background], np.float32)
        H, W = self.H, self.W
        y = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
        x = np.linspace(0, 1, W, dtype=np.float32)[None, :, None]
        img = np.broadcast_to(base, (H, W, 3)).copy()
        if self.c.backdrop == "gradient":
            img = img * (1.08 - 0.3 * y)
        elif self.c.backdrop == "striped":
            stripes = (np.floor(x * 8) % 2).astype(np.float32)
            img = img * (1.0 - 0.12 * stripes)
        im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        if self.c.backdrop == "framed picture":
            d = ImageDraw.Draw(im)
            color, left = self._picture
            x0 = 0.06 * W if left else 0.70 * W
            box = (x0, 0.08 * H, x0 + 0.24 * W, 0.30 * H)
            d.rectangle(box, fill=(110, 75, 40))
            inset = 0.02 * self.u
            d.rectangle((box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset), fill=color)
        return im

    # ---------------------------------------------------------------- per frame
    def render(self, pose: PoseTrack, i: int) -> np.ndarray:
        """Frame `i` of `pose` as (h, w, 3) uint8."""
        im = self.background.copy()
        d = ImageDraw.Draw(im)
        H, W, u = self.H, self.W, self.u
        cx, cy, rx, ry = self._head(pose, i)
        body_x = W / 2 + 0.3 * (cx - W / 2)
        shoulder_y = 0.74 * H

        self._draw_back_hair(d, cx, cy, rx, ry)
        # neck and torso
        d.rectangle((cx - 0.38 * rx, cy + 0.5 * ry, cx + 0.38 * rx, shoulder_y + 0.05 * H), fill=_shade(self.skin, 0.9))
        d.ellipse((body_x - 0.42 * u, shoulder_y, body_x + 0.42 * u, shoulder_y + 0.7 * H), fill=self.cloth)
        self._draw_garment(d, body_x, shoulder_y, rx)
        for side in ("right", "left"):
            self._draw_arm(d, side, float(pose.hand[side][i]), float(pose.wave[side][i]), body_x, shoulder_y)
        # head
        for s in (-1, 1):
            d.ellipse((cx + s * rx - 0.12 * rx, cy - 0.12 * ry, cx + s * rx + 0.12 * rx, cy + 0.16 * ry), fill=_shade(self.skin, 0.92))
        d.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=self.skin)
        self._draw_front_hair(d, cx, cy, rx, ry)
        self._draw_eyes(d, cx, cy, rx, ry, float(pose.blink[i]), float(pose.brow[i]))
        nose = (cx, cy + 0.05 * ry, cx - 0.06 * rx, cy + 0.25 * ry, cx + 0.04 * rx, cy + 0.27 * ry)
        d.line(nose, fill=_shade(self.skin, 0.72), width=max(1, int(0.025 * ry)))
        self._draw_mouth(d, cx, cy + 0.52 * ry, rx, ry, pose.mouth[i])
        return np.asarray(im.reduce(SUPERSAMPLE))

    def _head(self, pose: PoseTrack, i: int) -> tuple[float, float, float, float]:
        """Head centre and half-axes on the supersampled canvas."""
        ry = 0.21 * self.u * self.c.head_scale
        return (
            self.W / 2 + float(pose.head_dx[i]) * self.W,
            0.40 * self.H + float(pose.head_dy[i]) * self.H,
            ry * self.c.face_width,
            ry,
        )

    def mouth_box(self, pose: PoseTrack, i: int) -> tuple[int, int, int, int]:
        """Output-pixel box (x0, y0, x1, y1) that holds the mouth at its widest and most open."""
        cx, cy, rx, ry = self._head(pose, i)
        my = cy + 0.52 * ry
        s = SUPERSAMPLE
        box = (cx - 0.45 * rx, my - 0.33 * ry, cx + 0.45 * rx, my + 0.33 * ry)
        x0, y0, x1, y1 = (int(round(v / s)) for v in box)
        return max(x0, 0), max(y0, 0), min(x1, self.w), min(y1, self.h)

    def render_all(self, pose: PoseTrack) -> np.ndarray:
        return np.stack([self.render(pose, i) for i in range(len(pose))])

    def _draw_back_hair(self, d: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float) -> None:
        style, col = self.c.hair_style, self.hair
        if style == "long":
            d.rounded_rectangle((cx - 1.25 * rx, cy - 1.05 * ry, cx + 1.25 * rx, cy + 1.55 * ry), radius=int(rx), fill=_shade(col, 0.85))
        elif style == "bob":
            d.rounded_rectangle((cx - 1.2 * rx, cy - 1.08 * ry, cx + 1.2 * rx, cy + 0.75 * ry), radius=int(0.8 * rx), fill=_shade(col, 0.85))
        elif style == "curly":
            for k, a in enumerate(self._curls):
                r = 0.38 * rx
                px = cx + 1.05 * rx * np.cos(a)
                py = cy - 0.35 * ry + 0.85 * ry * np.sin(a) * (0.9 if np.sin(a) > 0 else 1.0)
                d.ellipse((px - r, py - r, px + r, py + r), fill=_shade(col, 0.8 + 0.02 * (k % 5)))
        elif style == "bun":
            r = 0.42 * rx
            d.ellipse((cx - r, cy - 1.28 * ry - r, cx + r, cy - 1.28 * ry + r), fill=col)

    def _draw_front_hair(self, d: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float) -> None:
        if self.c.hair_style == "bald":
            d.arc((cx - 0.7 * rx, cy - 0.95 * ry, cx - 0.1 * rx, cy - 0.6 * ry), 200, 280, fill=_shade(self.skin, 1.08), width=max(1, int(0.05 * ry)))
            return
        col = self.hair
        d.chord((cx - 1.06 * rx, cy - 1.1 * ry, cx + 1.06 * rx, cy + 0.1 * ry), 180, 360, fill=col)
        # a side parting sweeps a little lower on one side
        d.pieslice((cx - 1.06 * rx, cy - 0.95 * ry, cx + 0.2 * rx, cy + 0.05 * ry), 180, 270, fill=col)

    def _draw_eyes(self, d: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float, blink: float, brow: float) -> None:
        ey = cy - 0.06 * ry
        ew, eh = 0.19 * rx, 0.10 * ry * (1.0 - blink)
        brow_col = _shade(self.hair, 0.6) if self.c.hair_style != "bald" else _shade(self.skin, 0.55)
        for s in (-1, 1):
            ex = cx + s * 0.40 * rx
            if eh > 0.02 * ry:
                d.ellipse((ex - ew, ey - eh, ex + ew, ey + eh), fill=(248, 248, 245))
                ir = min(0.085 * ry, eh)
                d.ellipse((ex - 0.085 * ry, ey - ir, ex + 0.085 * ry, ey + ir), fill=self.eye)
                pr = min(0.04 * ry, eh)
                d.ellipse((ex - 0.04 * ry, ey - pr, ex + 0.04 * ry, ey + pr), fill=(15, 15, 20))
            else:
                d.line((ex - ew, ey, ex + ew, ey), fill=_shade(self.skin, 0.5), width=max(1, int(0.03 * ry)))
            by = ey - 0.24 * ry - 0.08 * ry * brow
            d.line((ex - 1.1 * ew, by + 0.02 * ry * s * 0, ex + 1.1 * ew, by - 0.01 * ry), fill=brow_col, width=max(2, int(0.055 * ry)))
            if self.c.glasses:
                g = 0.27 * rx
                d.ellipse((ex - g, ey - 0.8 * g, ex + g, ey + 0.8 * g), outline=(25, 25, 30), width=max(2, int(0.035 * ry)))
        if self.c.glasses:
            d.line((cx - 0.13 * rx, ey, cx + 0.13 * rx, ey), fill=(25, 25, 30), width=max(2, int(0.035 * ry)))

    def _draw_mouth(self, d: ImageDraw.ImageDraw, mx: float, my: float, rx: float, ry: float, m: np.ndarray) -> None:
        open_, width, round_ = float(m[0]), float(m[1]), float(m[2])
        hw = rx * (0.24 + 0.16 * width - 0.10 * round_)
        hh = ry * (0.035 + 0.26 * open_ + 0.03 * round_)
        lip = 0.035 * ry
        d.ellipse((mx - hw, my - hh, mx + hw, my + hh), fill=self.lips)
        ih = hh - lip
        if ih > 0.01 * ry:
            iw = hw - 0.6 * lip
            d.ellipse((mx - iw, my - ih, mx + iw, my + ih), fill=(60, 15, 20))
            if open_ > 0.25:
                t = min(0.35 * ih, 0.05 * ry)
                d.chord((mx - 0.8 * iw, my - ih, mx + 0.8 * iw, my - ih + 2.5 * t), 180, 360, fill=(240, 240, 232))
        else:
            d.line((mx - hw * 0.9, my, mx + hw * 0.9, my), fill=_shade(self.lips, 0.6), width=max(1, int(0.025 * ry)))

    def _draw_garment(self, d: ImageDraw.ImageDraw, bx: float, sy: float, rx: float) -> None:
        g, u = self.c.garment, self.u
        dark = _shade(self.cloth, 0.7)
        if g == "sweater":
            d.chord((bx - 0.45 * rx, sy - 0.06 * u, bx + 0.45 * rx, sy + 0.09 * u), 0, 180, fill=dark)
        elif g == "t-shirt":
            d.chord((bx - 0.4 * rx, sy - 0.05 * u, bx + 0.4 * rx, sy + 0.07 * u), 0, 180, fill=_shade(self.skin, 0.9))
        elif g == "jacket":
            d.polygon([(bx - 0.3 * rx, sy), (bx + 0.3 * rx, sy), (bx, sy + 0.22 * u)], fill=(235, 235, 235))
            d.polygon([(bx - 0.3 * rx, sy), (bx - 0.05 * rx, sy + 0.24 * u), (bx - 0.55 * rx, sy + 0.05 * u)], fill=dark)
            d.polygon([(bx + 0.3 * rx, sy), (bx + 0.05 * rx, sy + 0.24 * u), (bx + 0.55 * rx, sy + 0.05 * u)], fill=dark)
        elif g == "shirt":
            light = _mix(self.cloth, (255, 255, 255), 0.45)
            d.polygon([(bx - 0.35 * rx, sy - 0.01 * u), (bx, sy + 0.06 * u), (bx - 0.15 * rx, sy + 0.1 * u)], fill=light)
            d.polygon([(bx + 0.35 * rx, sy - 0.01 * u), (bx, sy + 0.06 * u), (bx + 0.15 * rx, sy + 0.1 * u)], fill=light)
            for k in range(3):
                y = sy + (0.12 + 0.07 * k) * u
                d.ellipse((bx - 0.008 * u, y - 0.008 * u, bx + 0.008 * u, y + 0.008 * u), fill=dark)

    def _draw_arm(self, d: ImageDraw.ImageDraw, side: str, amount: float, wave: float, bx: float, sy: float) -> None:
        if amount <= 0.01:
            return
        u, H = self.u, self.H
        s = -1.0 if side == "right" else 1.0  # character's right is the viewer's left
        shoulder = (bx + s * 0.33 * u, sy + 0.08 * H)
        rest = (bx + s * 0.40 * u, 1.15 * H)
        up = (bx + s * (0.36 + wave) * u, 0.52 * H)
        hx = rest[0] + (up[0] - rest[0]) * amount
        hy = rest[1] + (up[1] - rest[1]) * amount
        elbow = (bx + s * 0.45 * u, 0.95 * H + (0.80 - 0.95) * H * amount)
        width = int(0.11 * u)
        sleeve = _shade(self.cloth, 0.92)
        d.line([shoulder, elbow, (hx, hy + 0.05 * u)], fill=sleeve, width=width, joint="curve")
        r = 0.058 * u
        d.ellipse((hx - r, hy - 1.15 * r, hx + r, hy + 1.15 * r), fill=self.skin)
        tx0, tx1 = sorted((hx - s * 1.1 * r, hx - s * 0.3 * r))
        d.ellipse((tx0, hy - 0.1 * r, tx1, hy + 0.6 * r), fill=_shade(self.skin, 0.95))
