"""Random fills and backgrounds shared by the synthetic dataset generators."""
import numpy as np


def random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float32)


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An H x W x 3 float fill: solid, stripes, checker, noise or gradient."""
    c1 = random_colour(rng)
    c2 = np.clip(c1 + rng.normal(0, 70, 3), 0, 255)
    kind = rng.integers(0, 5)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # solid, with slight shading
        t = np.zeros((h, w), np.float32) + rng.uniform(0, 0.2)
    elif kind == 1:  # stripes at a random angle
        a, period = rng.uniform(0, np.pi), rng.uniform(4, 14)
        t = ((np.cos(a) * xx + np.sin(a) * yy) // period % 2).astype(np.float32)
    elif kind == 2:  # checker
        s = rng.uniform(4, 12)
        t = ((xx // s + yy // s) % 2).astype(np.float32)
    elif kind == 3:  # noise
        t = rng.uniform(0, 1, (h, w)).astype(np.float32)
    else:  # linear gradient
        a = rng.uniform(0, 2 * np.pi)
        t = np.cos(a) * xx + np.sin(a) * yy
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    return c1 * (1 - t[..., None]) + c2 * t[..., None]


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A cluttered uint8 background: a texture plus distracting strokes."""
    import cv2
    img = texture(rng, h, w)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    for _ in range(rng.integers(0, 6)):  # thin lines are clutter, not objects
        p1 = tuple(int(v) for v in rng.integers(0, [w, h]))
        p2 = tuple(int(v) for v in rng.integers(0, [w, h]))
        cv2.line(img, p1, p2, tuple(int(c) for c in random_colour(rng)),
                 int(rng.integers(1, 3)))
    return img
