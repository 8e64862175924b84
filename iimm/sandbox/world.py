"""The sandbox world: a procedural generator of captioned 32x32 RGB images.

The offline stand-in for the web-scale image-text pairs the paper's base models
were pretrained on (Section 3). A *scene* is drawn from a seeded distribution
over shapes, colours (basic colours and, rarely named, fine shades), sizes,
positions, background textures, object counts and glyphs (digits and letters
rendered with the fonts that matplotlib bundles: DejaVu Sans/Serif/Mono, STIX,
Computer Modern), then rendered at twice the resolution and box-downsampled
(anti-aliasing), and described by one of many natural caption templates.

Every image is a pure function of ``(seed, index)`` (one
``numpy.random.Generator`` per sample), so ``generate_pairs(n, seed)`` is
reproducible, order-independent, and a prefix of ``generate_pairs(m, seed)``
for ``m > n``.

Coverage is deliberately uneven, so that the downstream tasks of
:mod:`iimm.sandbox.tasks` range from well covered to barely covered: basic
colours, shapes and upright glyphs are named often; fine shades are named in a
few captions only; rotated glyphs and heavy pixel noise never occur.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "IMAGE_SIZE",
    "BASIC_COLORS",
    "SHADES",
    "SHAPES",
    "SIZES",
    "POSITIONS",
    "TEXTURES",
    "FONTS",
    "DIGIT_WORDS",
    "COUNT_WORDS",
    "Scene",
    "font_path",
    "render",
    "sample_scene",
    "sample_object",
    "sample_count",
    "sample_glyph",
    "sample_texture",
    "describe",
    "caption",
    "generate_pairs",
    "world_vocabulary",
]

IMAGE_SIZE = 32
_SS = 2  # supersampling factor: draw at 64 px, box-downsample to 32 px
_CANVAS = IMAGE_SIZE * _SS

BASIC_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 140, 20),
    "yellow": (245, 225, 40),
    "green": (40, 170, 50),
    "blue": (35, 70, 220),
    "purple": (140, 50, 180),
    "pink": (245, 130, 190),
    "brown": (125, 75, 35),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
    "gray": (130, 130, 130),
}

# fine shades: (rgb, basic colour family used by most captions)
SHADES: dict[str, tuple[tuple[int, int, int], str]] = {
    "crimson": ((200, 15, 60), "red"),
    "maroon": ((110, 0, 15), "red"),
    "salmon": ((250, 128, 114), "pink"),
    "coral": ((255, 110, 70), "orange"),
    "gold": ((230, 180, 0), "yellow"),
    "olive": ((120, 125, 0), "green"),
    "lime": ((150, 240, 30), "green"),
    "teal": ((0, 128, 128), "blue"),
    "navy": ((0, 10, 100), "blue"),
    "turquoise": ((60, 220, 205), "blue"),
    "lavender": ((185, 150, 235), "purple"),
    "indigo": ((75, 0, 140), "purple"),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "hexagon", "diamond", "heart")
_PLURAL = {"cross": "crosses"}

# name -> radius range in supersampled pixels
SIZES: dict[str, tuple[float, float]] = {"small": (6.0, 8.5), "medium": (10.5, 13.0), "large": (16.0, 19.0)}

# 3x3 grid of positions: name -> (row, col)
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0), "top": (0, 1), "top right": (0, 2),
    "left": (1, 0), "center": (1, 1), "right": (1, 2),
    "bottom left": (2, 0), "bottom": (2, 1), "bottom right": (2, 2),
}

TEXTURES: tuple[str, ...] = ("plain", "striped", "checkered", "dotted", "speckled", "grid", "zigzag", "gradient")

# font file (matplotlib/mpl-data/fonts/ttf) -> style word used in captions
FONTS: dict[str, str] = {
    "DejaVuSans.ttf": "sans",
    "DejaVuSans-Bold.ttf": "bold",
    "DejaVuSerif.ttf": "serif",
    "DejaVuSerif-Italic.ttf": "italic",
    "DejaVuSansMono.ttf": "mono",
    "STIXGeneral.ttf": "serif",
    "cmr10.ttf": "serif",
    "cmss10.ttf": "sans",
    "cmtt10.ttf": "typewriter",
}

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
DIGITS = tuple("0123456789")


@dataclass
class Scene:
    """Everything needed to render one image and to describe it.

    ``kind`` is ``"object"`` (one shape), ``"count"`` (several small shapes),
    ``"glyph"`` (a digit or letter) or ``"texture"`` (background only).
    Colours are RGB triples; ``color_name``/``shade`` name the object colour.
    """

    kind: str
    background: str = "plain"
    bg_colors: tuple[tuple[int, int, int], tuple[int, int, int]] = ((245, 245, 245), (130, 130, 130))
    bg_names: tuple[str, str] = ("white", "gray")
    bg_period: int = 8
    bg_angle: int = 0
    shape: str = "circle"
    color: tuple[int, int, int] = (215, 35, 35)
    color_name: str = "red"
    shade: str | None = None
    size: str = "medium"
    radius: float = 12.0
    position: str = "center"
    centers: list[tuple[float, float]] = field(default_factory=list)
    count: int = 1
    glyph: str = ""
    font: str = "DejaVuSans.ttf"
    rotation: float = 0.0
    noise: float = 0.0
    texture_seed: int = 0


@functools.lru_cache(maxsize=None)
def font_path(name: str) -> Path:
    """Path of a font file that matplotlib bundles (``mpl-data/fonts/ttf``).

    Raises
    ------
    FileNotFoundError
        If matplotlib is missing the file (the message names the path).
    """
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    if not path.is_file():
        raise FileNotFoundError(f"font {name!r} not found at {path}; the sandbox needs matplotlib's bundled fonts")
    return path


@functools.lru_cache(maxsize=256)
def _font(name: str, px: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(font_path(name)), px)


# ----------------------------------------------------------------------------- rendering


def _texture(scene: Scene) -> np.ndarray:
    """Background of the supersampled canvas, float32 (S, S, 3) in [0, 255]."""
    s = _CANVAS
    c1 = np.asarray(scene.bg_colors[0], np.float32)
    c2 = np.asarray(scene.bg_colors[1], np.float32)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    p = float(scene.bg_period)
    a = math.radians(scene.bg_angle)
    u = xx * math.cos(a) + yy * math.sin(a)  # rotated coordinates
    v = -xx * math.sin(a) + yy * math.cos(a)
    kind = scene.background
    if kind == "plain":
        m = np.zeros((s, s), np.float32)
    elif kind == "striped":
        m = (np.floor(v / (p / 2)) % 2).astype(np.float32)
    elif kind == "checkered":
        m = ((np.floor(xx / p) + np.floor(yy / p)) % 2).astype(np.float32)
    elif kind == "dotted":
        du = (xx % p) - p / 2
        dv = (yy % p) - p / 2
        m = (du * du + dv * dv <= (p / 3.2) ** 2).astype(np.float32)
    elif kind == "speckled":
        rng = np.random.default_rng(scene.texture_seed)
        cells = (rng.random((s // 2, s // 2)) < 0.3).astype(np.float32)
        m = np.kron(cells, np.ones((2, 2), np.float32))
    elif kind == "grid":
        m = (((xx % p) < 2) | ((yy % p) < 2)).astype(np.float32)
    elif kind == "zigzag":
        tri = np.abs((u % p) - p / 2)
        m = (np.floor((v + tri) / (p / 2)) % 2).astype(np.float32)
    elif kind == "gradient":
        m = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
    else:
        raise ValueError(f"background must be one of {TEXTURES}; got {kind!r}")
    return c1 * (1 - m[..., None]) + c2 * m[..., None]


def _shape_polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]] | None:
    """Vertices of a shape of circumradius ``r`` (None for the circle)."""
    if shape == "circle":
        return None
    if shape == "square":
        pts = [(math.cos(math.radians(45 + 90 * k)), math.sin(math.radians(45 + 90 * k))) for k in range(4)]
        pts = [(x * 0.9, y * 0.9) for x, y in pts]
    elif shape == "diamond":
        pts = [(0.75 * math.cos(math.radians(90 * k)), math.sin(math.radians(90 * k))) for k in range(4)]
    elif shape == "triangle":
        pts = [(math.cos(math.radians(-90 + 120 * k)), math.sin(math.radians(-90 + 120 * k)) + 0.15) for k in range(3)]
    elif shape == "hexagon":
        pts = [(math.cos(math.radians(60 * k)), math.sin(math.radians(60 * k))) for k in range(6)]
    elif shape == "star":
        pts = []
        for k in range(10):
            rad = 1.0 if k % 2 == 0 else 0.42
            ang = math.radians(-90 + 36 * k)
            pts.append((rad * math.cos(ang), rad * math.sin(ang) + 0.08))
    elif shape == "cross":
        w = 0.32
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)]
        pts = [(0.9 * x, 0.9 * y) for x, y in pts]
    elif shape == "heart":
        pts = []
        for k in range(40):
            t = 2 * math.pi * k / 40
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((x / 17.0, -y / 17.0 + 0.1))
    else:
        raise ValueError(f"shape must be one of {SHAPES}; got {shape!r}")
    c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def _object_mask(scene: Scene) -> np.ndarray:
    """Coverage mask (S, S) float32 in [0, 1] of the scene's foreground."""
    from PIL import Image, ImageDraw

    mask = Image.new("L", (_CANVAS, _CANVAS), 0)
    draw = ImageDraw.Draw(mask)
    if scene.kind in ("object", "count"):
        for cx, cy in scene.centers:
            poly = _shape_polygon(scene.shape, cx, cy, scene.radius, scene.rotation)
            if poly is None:
                r = scene.radius * 0.92
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
            else:
                draw.polygon(poly, fill=255)
    elif scene.kind == "glyph":
        px = max(8, int(round(scene.radius * 2.4)))
        font = _font(scene.font, px)
        cx, cy = scene.centers[0]
        draw.text((cx, cy), scene.glyph, fill=255, font=font, anchor="mm")
        if scene.rotation:
            mask = mask.rotate(scene.rotation, resample=Image.BILINEAR, center=(cx, cy))
    return np.asarray(mask, np.float32) / 255.0


def render(scene: Scene, rng: np.random.Generator | None = None) -> np.ndarray:
    """Render a scene into a (32, 32, 3) uint8 RGB image.

    ``rng`` supplies the pixel noise when ``scene.noise > 0`` (Gaussian, std
    ``scene.noise`` in grey levels, added after downsampling).
    """
    img = _texture(scene)
    if scene.kind != "texture":
        m = _object_mask(scene)[..., None]
        img = img * (1 - m) + np.asarray(scene.color, np.float32) * m
    img = img.reshape(IMAGE_SIZE, _SS, IMAGE_SIZE, _SS, 3).mean(axis=(1, 3))
    if scene.noise > 0:
        if rng is None:
            raise ValueError("render: a noisy scene needs rng")
        img = img + rng.normal(0.0, scene.noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- sampling


def _jitter(rgb: Sequence[int], rng: np.random.Generator, amount: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)  # type: ignore[return-value]


def _center_for(position: str, radius: float, rng: np.random.Generator) -> tuple[float, float]:
    row, col = POSITIONS[position]
    cell = _CANVAS / 3
    cx = (col + 0.5) * cell + rng.uniform(-cell / 6, cell / 6)
    cy = (row + 0.5) * cell + rng.uniform(-cell / 6, cell / 6)
    lo, hi = radius * 0.7, _CANVAS - radius * 0.7  # keep most of the object inside
    return float(np.clip(cx, lo, hi)), float(np.clip(cy, lo, hi))


_NEUTRAL = ("white", "gray", "black")


def _background(scene: Scene, rng: np.random.Generator, avoid: str | None, texture: str | None = None,
                p_texture: float = 0.25, p_neutral: float = 0.7) -> None:
    """Fill the background fields of ``scene`` (colours other than ``avoid``).

    A plain background behind an object is neutral (white, gray, black) with
    probability ``p_neutral``; textures use two basic colours.
    """
    names = [c for c in BASIC_COLORS if c != avoid]
    n1, n2 = rng.choice(names, size=2, replace=False)
    if texture is None:
        texture = "plain" if rng.random() >= p_texture else str(rng.choice(TEXTURES[1:]))
    if texture == "plain" and avoid is not None and rng.random() < p_neutral:
        # most objects lie on a neutral background (as in product photos), so that the
        # colour named in the caption is the salient colour of the image
        n1 = rng.choice([c for c in _NEUTRAL if c != avoid])
    scene.background = texture
    scene.bg_names = (str(n1), str(n2))
    scene.bg_colors = (_jitter(BASIC_COLORS[str(n1)], rng, 12), _jitter(BASIC_COLORS[str(n2)], rng, 12))
    scene.bg_period = int(rng.integers(6, 13))
    scene.bg_angle = int(rng.choice([0, 90, 45, -45]))
    scene.texture_seed = int(rng.integers(0, 2**31 - 1))


def _object_color(scene: Scene, rng: np.random.Generator, p_shade: float) -> None:
    if rng.random() < p_shade:
        shade = str(rng.choice(list(SHADES)))
        rgb, family = SHADES[shade]
        scene.color, scene.color_name, scene.shade = _jitter(rgb, rng, 8), family, shade
    else:
        name = str(rng.choice(list(BASIC_COLORS)))
        scene.color, scene.color_name, scene.shade = _jitter(BASIC_COLORS[name], rng, 15), name, None


def _place_many(n: int, radius: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """``n`` non-overlapping centres (rejection sampling, deterministic given rng)."""
    centers: list[tuple[float, float]] = []
    lo, hi = radius + 1, _CANVAS - radius - 1
    for _ in range(2000):
        if len(centers) == n:
            break
        c = (float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)))
        if all((c[0] - x) ** 2 + (c[1] - y) ** 2 > (2.3 * radius) ** 2 for x, y in centers):
            centers.append(c)
    if len(centers) != n:  # pragma: no cover - radius is small enough for 6 objects
        raise RuntimeError(f"could not place {n} objects of radius {radius}")
    return centers


def sample_object(rng: np.random.Generator, *, shape: str | None = None, color: str | None = None,
                  shade: str | None = None, size: str | None = None, position: str | None = None,
                  texture: str | None = None, p_shade: float = 0.3, p_texture: float = 0.25,
                  max_rotation: float = 12.0) -> Scene:
    """One shape; any attribute left ``None`` is drawn at random."""
    scene = Scene(kind="object")
    scene.shape = shape or str(rng.choice(SHAPES))
    if shade is not None:
        rgb, family = SHADES[shade]
        scene.color, scene.color_name, scene.shade = _jitter(rgb, rng, 8), family, shade
    elif color is not None:
        scene.color, scene.color_name, scene.shade = _jitter(BASIC_COLORS[color], rng, 15), color, None
    else:
        _object_color(scene, rng, p_shade)
    scene.size = size or str(rng.choice(list(SIZES)))
    scene.radius = float(rng.uniform(*SIZES[scene.size]))
    scene.position = position or str(rng.choice(list(POSITIONS)))
    scene.centers = [_center_for(scene.position, scene.radius, rng)]
    scene.rotation = float(rng.uniform(-max_rotation, max_rotation))
    _background(scene, rng, avoid=scene.color_name, texture=texture, p_texture=p_texture)
    return scene


def sample_count(rng: np.random.Generator, *, count: int | None = None, p_texture: float = 0.2) -> Scene:
    """One to six small shapes of one kind and colour."""
    scene = Scene(kind="count")
    scene.count = int(count if count is not None else rng.integers(1, 7))
    scene.shape = str(rng.choice(SHAPES))
    _object_color(scene, rng, p_shade=0.0)
    scene.size = "small"
    scene.radius = float(rng.uniform(5.0, 6.5))
    scene.centers = _place_many(scene.count, scene.radius, rng)
    scene.rotation = float(rng.uniform(-12, 12))
    _background(scene, rng, avoid=scene.color_name, p_texture=p_texture)
    return scene


def sample_glyph(rng: np.random.Generator, *, glyph: str | None = None, alphabet: Sequence[str] | None = None,
                 max_rotation: float = 8.0, p_texture: float = 0.15) -> Scene:
    """A digit or letter in one of the bundled fonts."""
    scene = Scene(kind="glyph")
    if glyph is None:
        alphabet = alphabet or (DIGITS + LETTERS)
        glyph = str(rng.choice(alphabet))
    scene.glyph = glyph
    scene.font = str(rng.choice(list(FONTS)))
    _object_color(scene, rng, p_shade=0.0)
    scene.size = str(rng.choice(["medium", "large"]))
    scene.radius = float(rng.uniform(*SIZES[scene.size]))
    scene.position = str(rng.choice(["center", "center", "left", "right", "top", "bottom"])) if scene.size == "medium" else "center"
    scene.centers = [_center_for(scene.position, scene.radius * 0.8, rng)]
    scene.rotation = float(rng.uniform(-max_rotation, max_rotation))
    _background(scene, rng, avoid=scene.color_name, p_texture=p_texture)
    return scene


def sample_texture(rng: np.random.Generator, *, texture: str | None = None) -> Scene:
    """A background pattern with no object."""
    scene = Scene(kind="texture")
    _background(scene, rng, avoid=None, texture=texture or str(rng.choice(TEXTURES)))
    return scene


# mixture of scene kinds in the pretraining distribution
_MIXTURE = (("object", 0.45), ("glyph", 0.30), ("count", 0.15), ("texture", 0.10))


def sample_scene(rng: np.random.Generator) -> Scene:
    """A scene from the pretraining distribution (mixture of the four kinds)."""
    kinds, probs = zip(*_MIXTURE)
    kind = kinds[int(rng.choice(len(kinds), p=np.asarray(probs)))]
    if kind == "object":
        return sample_object(rng)
    if kind == "glyph":
        return sample_glyph(rng)
    if kind == "count":
        return sample_count(rng)
    return sample_texture(rng)


# ----------------------------------------------------------------------------- captions


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return str(options[int(rng.integers(len(options)))])


def _position_phrase(position: str, rng: np.random.Generator) -> str:
    if position == "center":
        return _pick(rng, ["in the center", "in the middle", "at the center"])
    if " " in position:
        return _pick(rng, [f"in the {position} corner", f"in the {position}", f"at the {position}"])
    return _pick(rng, [f"on the {position}", f"at the {position}", f"in the {position}"])


def _background_phrase(scene: Scene, rng: np.random.Generator, short: bool = False) -> str:
    c1, c2 = scene.bg_names
    if scene.background == "plain":
        return _pick(rng, [f"on a {c1} background", f"on {c1}", f"against a {c1} background"])
    t = scene.background
    if t == "gradient":
        return _pick(rng, [f"on a {c1} to {c2} gradient", "on a gradient background", "on a gradient"][short:])
    return _pick(rng, [f"on a {t} {c1} and {c2} background", f"on a {t} background", f"on a {t} pattern"][short:])


def _color_word(scene: Scene, rng: np.random.Generator, p_shade_name: float = 0.2) -> str:
    if scene.shade is not None and rng.random() < p_shade_name:
        return scene.shade
    return scene.color_name


def _plural(shape: str) -> str:
    return _PLURAL.get(shape, shape + "s")


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A natural-language description of ``scene`` (a template drawn by ``rng``).

    At most 14 words, so that it fits the sandbox context length of 16 tokens
    with its start and end tokens.
    """
    if scene.kind == "object":
        col, shp, size = _color_word(scene, rng), scene.shape, scene.size
        pos, bg = _position_phrase(scene.position, rng), _background_phrase(scene, rng)
        templates = [
            f"a {col} {shp}",
            f"a {size} {col} {shp} {pos}",
            f"a photo of a {col} {shp} {bg}",
            f"a {col} {shp} {bg}",
            f"{col} {shp} {pos}",
            f"there is a {size} {shp} {pos}",
            f"a {shp} that is {col}",
            f"a {size} {shp} {bg}",
            f"a {col} {shp} {pos} {_background_phrase(scene, rng, short=True)}",
            f"an image of a {size} {col} {shp}",
            f"a drawing of a {shp}",
            f"the {shp} is {col} and {size}",
        ]
        return _pick(rng, templates)
    if scene.kind == "count":
        n, col, shp = scene.count, _color_word(scene, rng), scene.shape
        word = COUNT_WORDS[n] if rng.random() < 0.6 else str(n)
        noun = shp if n == 1 else _plural(shp)
        bg = _background_phrase(scene, rng)
        templates = [
            f"{word} {col} {noun}",
            f"a picture of {word} {noun}",
            f"{word} {noun} {bg}",
            f"there {'is' if n == 1 else 'are'} {word} {col} {noun}",
            f"{word} small {col} {noun}",
            f"a group of {word} {noun}" if n > 1 else f"a single {col} {shp}",
            f"{n} {noun}",
        ]
        return _pick(rng, templates)
    if scene.kind == "glyph":
        g, col, style = scene.glyph, _color_word(scene, rng), FONTS[scene.font]
        bg = _background_phrase(scene, rng)
        if g.isdigit():
            w = DIGIT_WORDS[int(g)]
            templates = [
                f"the digit {g}", f"the number {g}", f"the number {w}", f"a {col} {g}",
                f"a {col} digit {g} {bg}", f"the digit {w} in a {style} font", f"a {style} {g}",
                f"a photo of the number {g}", f"a {col} number {w}", f"the numeral {g} written in {col}",
            ]
        else:
            lo = g.lower()
            templates = [
                f"the letter {lo}", f"a {col} letter {lo}", f"the letter {lo} in a {style} font",
                f"a capital {lo}", f"a {col} letter {lo} {bg}", f"the character {lo}",
                f"a {style} letter {lo}", f"a photo of the letter {lo}", f"an uppercase {lo} in {col}",
            ]
        return _pick(rng, templates)
    if scene.kind == "texture":
        t = scene.background
        c1, c2 = scene.bg_names
        if t == "plain":
            templates = [f"a plain {c1} background", f"a plain {c1} image", f"nothing but {c1}", "a plain background"]
        else:
            templates = [f"a {t} pattern", f"a {t} pattern in {c1} and {c2}", f"a {t} texture",
                         f"{c1} and {c2} {t} background", f"a {t} background"]
        return _pick(rng, templates)
    raise ValueError(f"scene.kind must be object, count, glyph or texture; got {scene.kind!r}")


# ----------------------------------------------------------------------------- datasets of pairs


def _sample_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(stream), int(index)])


def generate_pairs(n: int, seed: int = 0, *, start: int = 0) -> tuple[np.ndarray, list[str]]:
    """Generate ``n`` captioned images of the pretraining distribution.

    Sample ``i`` depends only on ``(seed, start + i)``.

    Returns
    -------
    images : ndarray, uint8, shape (n, 32, 32, 3)
    captions : list of str, length n
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    captions: list[str] = []
    for i in range(n):
        rng = _sample_rng(seed, 0, start + i)
        scene = sample_scene(rng)
        images[i] = render(scene, rng)
        captions.append(caption(scene, rng))
    return images, captions


def world_vocabulary() -> list[str]:
    """Every word any pretraining caption can contain (sorted)."""
    words: set[str] = set()
    words.update(BASIC_COLORS, SHADES, SHAPES, (_plural(s) for s in SHAPES), SIZES, TEXTURES)
    for p in POSITIONS:
        words.update(p.split())
    words.update(FONTS.values())
    words.update(DIGIT_WORDS, DIGITS, (c.lower() for c in LETTERS))
    words.update(str(k) for k in COUNT_WORDS)
    words.update(COUNT_WORDS.values())
    words.update("""a an the of on in at is are and to that there photo image picture drawing group single small
        corner middle background against pattern texture nothing but plain digit number numeral written letter
        capital character uppercase font photo gradient""".split())
    return sorted(words)


def describe(scene: Scene) -> dict[str, Any]:
    """The scene's attributes as a JSON-serialisable dict (for provenance and debugging)."""
    from dataclasses import asdict

    return asdict(scene)
