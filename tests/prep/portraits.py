"""Synthetic aligned head-and-shoulders portraits at CelebA's 178x218 framing, with their true person masks.

Each seed gives another person and scene: the face where CelebA's alignment puts it (eyes near y 111, centred),
skin, hair and clothing in varied colours with texture, shading and noise, short or long hair, shoulders that reach
the sides and the bottom of the frame, over a textured background (gradient, bokeh, stripes, blurred blobs or an
indoor wall), saved through JPEG like CelebA's files. Used by the background tests and by
`benchmarks/celeba_speed.py`, which measure how much of the person a background remover keeps.
"""

from __future__ import annotations

import cv2
import numpy as np

WIDTH, HEIGHT = 178, 218
SKIN = [(241, 204, 178), (224, 172, 140), (198, 146, 110), (160, 110, 80), (112, 74, 52), (84, 56, 40)]
# Hair colours about as often as among CelebA's celebrities: mostly black and brown, some blonde, few red or grey.
HAIR = [(25, 20, 18)] * 5 + [(60, 40, 28)] * 5 + [(105, 70, 40)] * 4 + [(150, 110, 60)] * 2 + [(215, 180, 120)] * 3
HAIR += [(150, 70, 35), (170, 165, 160)]
CLOTHES = [(20, 20, 25), (235, 235, 230), (40, 60, 120), (140, 30, 40), (90, 110, 80), (120, 120, 125), (200, 150, 90)]


def _colour(rng: np.random.Generator, palette: list[tuple[int, int, int]], spread: float) -> np.ndarray:
    """A palette colour, lighter or darker, its hue shifted by up to about `spread` per channel."""
    base = np.asarray(palette[rng.integers(len(palette))], np.float32) * rng.uniform(0.85, 1.15)
    return np.clip(base + rng.normal(0, spread, 3), 0, 255)


def _noise(rng: np.random.Generator, sigma: float, blur: float = 0) -> np.ndarray:
    """Gaussian noise, optionally blurred into blotches (then rescaled to keep `sigma`)."""
    field = rng.normal(0, 1, (HEIGHT, WIDTH)).astype(np.float32)
    if blur:
        field = cv2.GaussianBlur(field, (0, 0), blur)
        field /= field.std() + 1e-6
    return field * sigma


def _strands(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Hair texture: noise smeared along the vertical, like strands."""
    field = cv2.blur(rng.normal(0, 1, (HEIGHT, WIDTH)).astype(np.float32), (1, 15))
    return field / (field.std() + 1e-6) * sigma


def _ellipse(centre, axes, angle: float = 0) -> np.ndarray:
    """Where a filled ellipse lies in the frame."""
    return cv2.ellipse(np.zeros((HEIGHT, WIDTH), np.uint8), centre, axes, angle, 0, 360, 255, -1) > 0


def _polygon(points) -> np.ndarray:
    """Where a filled polygon lies in the frame."""
    return cv2.fillPoly(np.zeros((HEIGHT, WIDTH), np.uint8), [np.asarray(points, np.int32)], 255) > 0


def background(rng: np.random.Generator) -> np.ndarray:
    """A textured scene behind the person: one of five kinds, in random colours."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    grey = rng.uniform(0.2, 0.8)  # how muted the scene's colours are
    low, high = (rng.uniform(20, 235, 3) * (1 - grey) + rng.uniform(20, 235) * grey for _ in range(2))
    angle = rng.uniform(0, np.pi)
    ramp = ((xx * np.cos(angle) + yy * np.sin(angle)) / (WIDTH + HEIGHT) + 0.5).clip(0, 1)[:, :, None]
    image = low * (1 - ramp) + high * ramp
    kind = rng.integers(5)
    if kind == 1:  # bokeh: out-of-focus lights
        for _ in range(rng.integers(8, 25)):
            centre = (int(rng.integers(WIDTH)), int(rng.integers(HEIGHT)))
            lights = np.zeros((HEIGHT, WIDTH, 3), np.float32)
            cv2.circle(lights, centre, int(rng.integers(6, 22)), rng.uniform(30, 110, 3).tolist(), -1)
            image += cv2.GaussianBlur(lights, (0, 0), 2)
    elif kind == 2:  # striped or tiled wall
        period = rng.uniform(8, 30)
        stripes = (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period) > 0).astype(np.float32)
        image += stripes[:, :, None] * rng.uniform(-50, 50, 3)
    elif kind == 3:  # blurred blobs: a scene far out of focus
        blobs = rng.uniform(-70, 70, (HEIGHT // 16 + 1, WIDTH // 16 + 1, 3)).astype(np.float32)
        image += cv2.GaussianBlur(cv2.resize(blobs, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC), (0, 0), 4)
    elif kind == 4:  # indoor: a door or window frame and a shelf line
        x0, y0 = int(rng.integers(0, WIDTH // 2)), int(rng.integers(0, HEIGHT // 3))
        frame = np.zeros((HEIGHT, WIDTH), np.uint8)
        cv2.rectangle(frame, (x0, y0), (x0 + int(rng.integers(40, 120)), HEIGHT), 255, int(rng.integers(3, 9)))
        cv2.line(frame, (0, int(rng.integers(20, 120))), (WIDTH, int(rng.integers(20, 120))), 255, 4)
        image += cv2.GaussianBlur(frame.astype(np.float32), (0, 0), 1.5)[:, :, None] / 255 * rng.uniform(-80, 80, 3)
    image += _noise(rng, rng.uniform(3, 10), blur=rng.uniform(0, 2))[:, :, None]
    return image


def portrait(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 178x218 portrait, bool mask of the person: head, hair, neck, shoulders) for `seed`."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.92, 1.08)
    cx, cy = 89 + rng.uniform(-4, 4), 122 + rng.uniform(-6, 6)  # the face's centre; eyes about 11 px above it

    def at(dx: float, dy: float) -> tuple[int, int]:
        return round(cx + dx * scale), round(cy + dy * scale)

    def size(rx: float, ry: float) -> tuple[int, int]:
        return round(rx * scale), round(ry * scale)

    face = _ellipse(at(0, 0), size(40 + rng.uniform(-4, 4), 56 + rng.uniform(-4, 4)))
    neck = _polygon([at(-21, 20), at(21, 20), at(24, 80), at(-24, 80)])
    shoulder_y = cy + scale * rng.uniform(40, 56)  # where the shoulders leave the neck
    drop = rng.uniform(6, 30)  # how much lower they meet the frame's sides
    xs = np.arange(WIDTH, dtype=np.float32)
    top = shoulder_y + drop * (np.clip(np.abs(xs - cx) - 22 * scale, 0, None) / (WIDTH / 2)) ** 0.7
    torso = np.arange(HEIGHT, dtype=np.float32)[:, None] >= top[None, :]
    collar = _polygon([at(-22, 64), at(22, 64), at(0, 64 + rng.uniform(15, 40))]) & torso
    cranium = _ellipse(at(0, -22 + rng.uniform(-4, 4)), size(50 + rng.uniform(0, 10), 68 + rng.uniform(0, 10)))
    hairline = _ellipse(at(0, 14 + rng.uniform(0, 8)), size(44, 56)) | (np.mgrid[0:HEIGHT, 0:WIDTH][0] > cy)
    hair = cranium & ~(face & hairline)
    if rng.random() < 0.45:  # long hair falling to the shoulders on both sides
        reach = rng.uniform(56, 82)
        length = rng.uniform(50, 95)
        for side in (-1, 1):
            hair |= _polygon([at(side * 38, -20), at(side * reach, -10), at(side * reach, length), at(side * 36, 40)])

    skin_tone, hair_tone, cloth_tone = _colour(rng, SKIN, 4), _colour(rng, HAIR, 6), _colour(rng, CLOTHES, 15)
    image = background(rng)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    light = 1 + rng.uniform(-0.25, 0.25) * (xx - cx) / WIDTH  # light from one side
    shade = np.clip(1 - 0.35 * (((xx - cx) / (44 * scale)) ** 2 + ((yy - cy) / (64 * scale)) ** 2) ** 2, 0.6, 1)
    skin = skin_tone * (shade * light)[:, :, None] + _noise(rng, 4, blur=1.5)[:, :, None] + _noise(rng, 3)[:, :, None]
    fabric = cloth_tone * light[:, :, None] + _noise(rng, 8, blur=3)[:, :, None] + _noise(rng, 4)[:, :, None]
    if rng.random() < 0.4:  # a pattern on the clothes
        fabric += (np.sin((xx + yy * rng.uniform(-1, 1)) / rng.uniform(2, 5)) > 0)[:, :, None] * rng.uniform(-40, 40, 3)
    strands = hair_tone * light[:, :, None] + _strands(rng, 12)[:, :, None] + _noise(rng, 5)[:, :, None]

    def paint(where: np.ndarray, colours: np.ndarray) -> None:
        soft = cv2.GaussianBlur(where.astype(np.float32), (0, 0), 0.7)[:, :, None]
        image[:] = image * (1 - soft) + colours * soft

    back_hair = hair & ~cranium
    paint(back_hair, strands * 0.85)
    paint(neck, skin * 0.85)
    paint(torso & ~collar, fabric)
    paint(collar, skin * 0.9)
    paint(face, skin)
    paint(hair & cranium, strands)
    for side in (-1, 1):  # eyebrows, eyes, irises
        paint(_ellipse(at(side * 19, -24), size(11, 3), side * 8), strands * 0.9)
        paint(_ellipse(at(side * 19, -11), size(8, 4)), np.full(3, 235, np.float32))
        paint(_ellipse(at(side * 19, -11), size(3, 3)), np.full(3, 40, np.float32))
    paint(_ellipse(at(0, 12), size(6, 4)), skin * 0.8)  # the nose's shadow
    lips = np.asarray((0.85, 0.55, 0.55), np.float32) * skin_tone + rng.uniform(0, 30)
    paint(_ellipse(at(0, 30), size(15 + rng.uniform(-3, 3), 5)), lips)
    person = face | neck | torso | hair
    ok, jpeg = cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED), person


def kept_and_removed(alpha: np.ndarray, person: np.ndarray) -> tuple[float, float]:
    """(share of the person a mask keeps, share of the background it removes); alpha >= 128 counts as kept."""
    kept = alpha >= 128
    return float(kept[person].mean()), float((~kept[~person]).mean())
