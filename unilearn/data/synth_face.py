"""Procedural expressive faces for the synthetic datasets: who a face is (`Identity`), what each
emotion does to it over time (`EXPRESSIONS`, `expression_at`) and how a frame is drawn (`render`).

The faces are drawn, not sampled from a generative model, so the data is tiny, deterministic and
needs no download. They are realistic enough for real face detectors (MTCNN, OpenCV Haar) and every
emotion has a large, distinct shape at 64x64 (mouth, brows, eyes, head motion), shared between
still images and videos, so a tiny ViT learns it in a few epochs and joint SFER/DFER training helps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from unilearn.catalogue import canonical_emotion

# cv2 draws with fixed-point coordinates: 4 fractional bits give sub-pixel, anti-aliased shapes.
_SHIFT = 4
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Expression:
    """Facial action at full intensity (0 = neutral face), in face units (half face width = 1)."""

    mouth_curve: float = 0.0  # +1 smile (corners up), -1 frown
    mouth_open: float = 0.0  # 0 closed .. 1 wide open
    mouth_width: float = 1.0  # relative to the neutral mouth
    mouth_asym: float = 0.0  # one corner up (contempt smirk)
    brow_raise: float = 0.0  # +1 raised, -1 lowered
    brow_inner: float = 0.0  # +1 inner ends up (sad/fear), -1 inner ends down (anger)
    eye_open: float = 1.0  # eyelid aperture, 1 = neutral
    nose_wrinkle: float = 0.0  # disgust
    cheeks: float = 0.0  # raised, flushed cheeks (smile)
    teeth: float = 0.0  # teeth shown in the opening (smile, snarl, clench)
    head_roll: float = 0.0  # degrees
    head_drop: float = 0.0  # downward shift of the head, face units
    gaze_down: float = 0.0  # pupils down
    # temporal behaviour
    onset: float = 0.35  # fraction of the clip the expression takes to reach its apex
    laugh: float = 0.0  # mouth opening oscillation amplitude
    tremble: float = 0.0  # fast jitter of head and gaze
    shake: float = 0.0  # head roll oscillation amplitude, degrees
    turn: float = 0.0  # sideways drift of the head over the clip, face units


# One entry per canonical emotion (labels.canonical_emotion maps every dataset's names here).
EXPRESSIONS: dict[str, Expression] = {
    "neutral": Expression(onset=0.3),
    "happy": Expression(
        mouth_curve=1.0,
        mouth_open=0.45,
        mouth_width=1.35,
        eye_open=0.6,
        cheeks=1.0,
        teeth=1.0,
        brow_raise=0.15,
        onset=0.3,
        laugh=0.35,
    ),
    "sad": Expression(
        mouth_curve=-1.0,
        mouth_width=0.85,
        eye_open=0.55,
        brow_inner=1.2,
        gaze_down=0.6,
        head_drop=0.05,
        onset=0.6,
    ),
    "angry": Expression(
        mouth_curve=-0.35,
        mouth_open=0.3,
        mouth_width=1.0,
        brow_raise=-0.9,
        brow_inner=-1.5,
        teeth=1.0,
        eye_open=0.75,
        onset=0.3,
        shake=4.0,
    ),
    "surprise": Expression(
        mouth_open=1.1,
        mouth_width=0.55,
        brow_raise=1.3,
        eye_open=1.35,
        onset=0.1,
    ),
    "disgust": Expression(
        mouth_curve=-0.55,
        mouth_open=0.35,
        mouth_asym=-0.6,
        brow_raise=-0.5,
        brow_inner=-0.5,
        teeth=0.6,
        eye_open=0.45,
        nose_wrinkle=1.0,
        onset=0.35,
        turn=0.12,
    ),
    "fear": Expression(
        mouth_curve=-0.3,
        mouth_open=0.55,
        mouth_width=1.3,
        brow_raise=0.9,
        brow_inner=0.9,
        eye_open=1.3,
        onset=0.2,
        tremble=1.0,
        head_drop=-0.04,
    ),
    "contempt": Expression(
        mouth_asym=1.0, mouth_width=1.05, eye_open=0.8, head_roll=9.0, onset=0.4
    ),
    "anxiety": Expression(
        mouth_curve=-0.15,
        mouth_width=0.7,
        brow_raise=0.3,
        brow_inner=0.7,
        eye_open=1.2,
        onset=0.3,
        tremble=1.6,
    ),
    "helplessness": Expression(
        mouth_curve=-0.5,
        mouth_open=0.35,
        brow_raise=0.6,
        brow_inner=1.1,
        eye_open=0.55,
        head_roll=-11.0,
        onset=0.45,
    ),
    "disappointment": Expression(
        mouth_curve=-0.6,
        mouth_width=1.2,
        brow_raise=-0.2,
        eye_open=0.4,
        gaze_down=1.0,
        head_drop=0.12,
        onset=0.6,
    ),
}

_SKIN = np.array(
    [
        (255, 224, 196),
        (238, 198, 166),
        (224, 172, 140),
        (198, 144, 110),
        (160, 110, 80),
        (110, 72, 50),
    ],
    np.float32,
)
_HAIR = np.array(
    [(25, 20, 18), (70, 45, 30), (120, 80, 45), (200, 165, 100), (150, 60, 30), (140, 140, 140)],
    np.float32,
)
_LIPS = np.array([(170, 60, 70), (150, 70, 70), (190, 90, 100), (120, 50, 50)], np.float32)


@dataclass(frozen=True)
class Identity:
    """Everything that varies between people and recordings but says nothing about the emotion."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    lips: tuple[float, float, float]
    hair_style: int  # 0 short, 1 long, 2 none
    aspect: float  # face height / width
    eye_spacing: float
    eye_size: float
    brow_thickness: float
    nose_length: float
    background: tuple[tuple[float, float, float], tuple[float, float, float]]
    clutter: tuple[tuple[float, ...], ...]  # (x0, y0, x1, y1, r, g, b) in [0,1] image units
    clothes: tuple[float, float, float]
    light: float  # brightness gain
    light_side: float  # left-right illumination gradient
    noise: float  # sensor noise sigma, grey levels
    gaze: tuple[float, float]
    blinks: tuple[float, ...]  # times (0..1) of blinks


def sample_identity(rng: np.random.Generator) -> Identity:
    """A random person, background and lighting."""

    def jitter(palette: np.ndarray, amount: float) -> tuple[float, float, float]:
        base = palette[rng.integers(len(palette))]
        return tuple(np.clip(base + rng.normal(0, amount, 3), 0, 255).tolist())

    dark = rng.uniform(20, 120, 3)
    light = np.clip(dark + rng.uniform(-40, 100, 3), 0, 255)
    clutter = tuple(
        (*sorted(rng.uniform(0, 1, 2)), *sorted(rng.uniform(0, 1, 2)), *rng.uniform(20, 230, 3))
        for _ in range(rng.integers(0, 4))
    )
    # reorder to (x0, y0, x1, y1, ...) from (x0, x1, y0, y1, ...)
    clutter = tuple((c[0], c[2], c[1], c[3], c[4], c[5], c[6]) for c in clutter)
    return Identity(
        skin=jitter(_SKIN, 8),
        hair=jitter(_HAIR, 10),
        lips=jitter(_LIPS, 10),
        hair_style=int(rng.integers(3)),
        aspect=float(rng.uniform(1.2, 1.42)),
        eye_spacing=float(rng.uniform(0.38, 0.46)),
        eye_size=float(rng.uniform(0.9, 1.1)),
        brow_thickness=float(rng.uniform(0.08, 0.11)),
        nose_length=float(rng.uniform(0.85, 1.15)),
        background=(tuple(dark.tolist()), tuple(light.tolist())),
        clutter=clutter,
        clothes=tuple(rng.uniform(20, 230, 3).tolist()),
        light=float(rng.uniform(0.8, 1.15)),
        light_side=float(rng.uniform(-0.2, 0.2)),
        noise=float(rng.uniform(0.0, 6.0)),
        gaze=(float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.2, 0.2))),
        blinks=tuple(rng.uniform(0, 1, rng.integers(0, 3)).tolist()),
    )


@dataclass(frozen=True)
class Pose:
    """Where the face is in the frame: centre (pixels), half face width (pixels), roll (degrees)."""

    cx: float
    cy: float
    half_width: float
    roll: float = 0.0


@dataclass(frozen=True)
class FaceState:
    """The face at one instant: pose plus expression parameters (already scaled by intensity)."""

    pose: Pose
    expression: Expression
    gaze: tuple[float, float]
    blink: float  # 0 open .. 1 closed


def expression_for(emotion: str) -> Expression:
    """The expression of a class name from any dataset (`happiness`, `Happy`, `anger`, ...)."""
    return EXPRESSIONS[canonical_emotion(emotion)]


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def expression_at(
    emotion: str,
    t: float,
    *,
    intensity: float,
    start: float,
    speed: float,
    phase: float,
    identity: Identity,
    pose: Pose,
    talk: float = 0.0,
) -> FaceState:
    """The face of `emotion` at time `t` in [0, 1] of a clip.

    The expression rises from neutral (onset starting at `start`, duration scaled by `speed`),
    then holds its apex with the emotion's own motion (laugh, tremble, head shake, turning away).
    A still image is `t=1` with a late enough clock for the apex. `talk` adds speech-like mouth
    motion (the unlabeled VoxCeleb2 clips).
    """
    e = expression_for(emotion)
    a = intensity * _smoothstep((t - start) / max(e.onset * speed, 1e-3))
    wobble = math.sin(2 * math.pi * (5.0 * t + phase))
    jitter = (
        math.sin(2 * math.pi * (11.0 * t + 2 * phase)),
        math.cos(2 * math.pi * (13.0 * t + phase)),
    )
    scaled = replace(
        e,
        mouth_curve=a * e.mouth_curve,
        mouth_open=a * e.mouth_open
        + a * e.laugh * 0.5 * (1 + wobble)
        + talk * abs(math.sin(2 * math.pi * (3.0 * t + phase))),
        mouth_width=1 + a * (e.mouth_width - 1),
        mouth_asym=a * e.mouth_asym,
        brow_raise=a * e.brow_raise,
        brow_inner=a * e.brow_inner,
        eye_open=1 + a * (e.eye_open - 1),
        nose_wrinkle=a * e.nose_wrinkle,
        cheeks=a * e.cheeks,
        head_drop=a * e.head_drop,
        gaze_down=a * e.gaze_down,
    )
    hw = pose.half_width
    roll = pose.roll + a * e.head_roll + a * e.shake * wobble + a * e.tremble * 1.5 * jitter[0]
    cx = pose.cx + hw * (a * e.turn + a * e.tremble * 0.03 * jitter[1])
    cy = pose.cy + hw * a * e.head_drop
    gaze = (
        identity.gaze[0] * (1 - a) + a * e.tremble * 0.5 * jitter[0],
        identity.gaze[1] * (1 - a) + a * e.gaze_down * 0.5,
    )
    blink = max((max(0.0, 1 - abs(t - b) * 25) for b in identity.blinks), default=0.0)
    return FaceState(Pose(cx, cy, hw, roll), scaled, gaze, blink)


def _fx(v: float) -> int:
    return int(round(v * _ONE))


class _Canvas:
    """Face-unit drawing on a float RGB image: (u, v) with u right, v down, half face width 1."""

    def __init__(self, img: np.ndarray, pose: Pose):
        self.img = img
        self.p = pose
        r = math.radians(pose.roll)
        self.c, self.s = math.cos(r), math.sin(r)

    def xy(self, u: float, v: float) -> tuple[float, float]:
        hw = self.p.half_width
        return self.p.cx + hw * (self.c * u - self.s * v), self.p.cy + hw * (
            self.s * u + self.c * v
        )

    def pts(self, uv: np.ndarray) -> np.ndarray:
        hw = self.p.half_width
        x = self.p.cx + hw * (self.c * uv[:, 0] - self.s * uv[:, 1])
        y = self.p.cy + hw * (self.s * uv[:, 0] + self.c * uv[:, 1])
        return np.round(np.stack([x, y], 1) * _ONE).astype(np.int32)

    def ellipse(self, u, v, au, av, color, thickness=-1, start=0, end=360, target=None) -> None:
        x, y = self.xy(u, v)
        hw = self.p.half_width
        axes = (_fx(max(au * hw, 0.5)), _fx(max(av * hw, 0.5)))
        th = thickness if thickness < 0 else max(1, int(round(thickness * hw)))
        cv2.ellipse(
            self.img if target is None else target,
            (_fx(x), _fx(y)),
            axes,
            self.p.roll,
            start,
            end,
            color,
            th,
            cv2.LINE_AA,
            _SHIFT,
        )

    def poly(self, uv: np.ndarray, color, target=None) -> None:
        cv2.fillPoly(
            self.img if target is None else target, [self.pts(uv)], color, cv2.LINE_AA, _SHIFT
        )

    def line(self, uv: np.ndarray, color, thickness: float) -> None:
        th = max(1, int(round(thickness * self.p.half_width)))
        cv2.polylines(self.img, [self.pts(uv)], False, color, th, cv2.LINE_AA, _SHIFT)


def _bezier(p0, p1, p2, n: int = 12) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t**2 * np.asarray(p2)


def render_background(height: int, width: int, identity: Identity) -> np.ndarray:
    """The scene behind the face: a vertical gradient with a few blurred objects (float RGB)."""
    top, bottom = (np.asarray(c, np.float32) for c in identity.background)
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (height, width, 3)).copy()
    for x0, y0, x1, y1, *rgb in identity.clutter:
        cv2.rectangle(
            img, (int(x0 * width), int(y0 * height)), (int(x1 * width), int(y1 * height)), rgb, -1
        )
    if identity.clutter:
        k = max(3, (min(height, width) // 24) | 1)
        img = cv2.GaussianBlur(img, (k, k), 0)
    return img


def render(
    background: np.ndarray,
    identity: Identity,
    state: FaceState,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Draw one face onto a copy of `background` (float RGB) and return uint8 RGB [H, W, 3]."""
    img = background.copy()
    h, w = img.shape[:2]
    cv = _Canvas(img, state.pose)
    e = state.expression
    skin = np.asarray(identity.skin, np.float32)
    hair = identity.hair
    fa = identity.aspect  # face half height in face units

    # hair behind the head, neck, then the face with radial shading
    if identity.hair_style == 1:
        cv.ellipse(0, -0.05 * fa, 1.22, fa * 1.12, hair)
    cv.poly(
        np.array([[-0.5, 0.5 * fa], [0.5, 0.5 * fa], [0.62, 3.0 * fa], [-0.62, 3.0 * fa]]),
        (skin * 0.8).tolist(),
    )
    # shoulders in clothing, and ears: without them detectors see a floating oval
    cv.ellipse(0, 2.35 * fa, 2.1, 0.9 * fa, identity.clothes)
    for side in (-1, 1):
        cv.ellipse(side * 0.98, 0.0, 0.14, 0.24 * fa, (skin * 0.85).tolist())
    mask = np.zeros((h, w), np.float32)
    cv.ellipse(0, 0, 1.0, fa, 1.0, target=mask)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    hw = state.pose.half_width
    r2 = ((xx - state.pose.cx) / hw) ** 2 + ((yy - state.pose.cy) / (hw * fa)) ** 2
    shade = np.clip(1.06 - 0.32 * r2, 0.6, 1.1)[..., None]
    img[:] = img * (1 - mask[..., None]) + skin * shade * mask[..., None]
    if identity.hair_style in (0, 1):
        cv.ellipse(0, -0.58 * fa, 1.06, fa * 0.52, hair, start=180, end=360)

    if e.cheeks > 0:
        blush = (skin * (1 - 0.18 * e.cheeks) + np.array([60, 0, 0]) * 0.18 * e.cheeks).tolist()
        for side in (-1, 1):
            cv.ellipse(side * 0.52, 0.22 * fa, 0.2, 0.12 * fa, blush)

    # eyes: sclera, iris, pupil, eyelid; brows above them
    # brows always darker than the skin, whatever the hair colour: they carry much of the signal
    brow_colour = np.minimum(np.asarray(hair, np.float32), skin * 0.35).tolist()
    ey = -0.12 * fa
    ex = identity.eye_spacing * 1.05
    aperture = max(0.05, 0.1 * fa * e.eye_open * identity.eye_size * (1 - 0.9 * state.blink))
    for side in (-1, 1):
        x = side * ex
        # the eye socket's shadow is what real detectors key on most
        cv.ellipse(x, ey - 0.02 * fa, 0.3, 0.17 * fa, (skin * 0.8).tolist())
        cv.ellipse(x, ey, 0.23 * identity.eye_size, aperture, (240, 238, 232))
        gx, gy = state.gaze
        iris_v = ey + gy * 0.5 * aperture + 0.02 * e.gaze_down
        r_iris = min(0.115 * identity.eye_size * fa, aperture * 1.05)
        cv.ellipse(x + 0.07 * gx, iris_v, r_iris / fa * fa, r_iris, (70, 45, 30))
        cv.ellipse(x + 0.07 * gx, iris_v, r_iris * 0.45, r_iris * 0.45, (8, 8, 8))
        cv.ellipse(
            x,
            ey,
            0.25 * identity.eye_size,
            aperture * 1.1,
            (skin * 0.3).tolist(),
            thickness=0.05,
            start=180,
            end=360,
        )
        if state.blink > 0.5:
            cv.ellipse(x, ey, 0.24 * identity.eye_size, aperture, (skin * 0.85).tolist())
        brow_v = ey - 0.16 * fa - 0.15 * fa * e.brow_raise
        inner = brow_v - 0.12 * fa * e.brow_inner
        outer = brow_v + 0.04 * fa * e.brow_inner
        brow = _bezier(
            (x - side * 0.22, inner), (x + side * 0.05, brow_v - 0.05 * fa), (x + side * 0.3, outer)
        )
        cv.line(brow, brow_colour, identity.brow_thickness * 1.4)

    # nose: bridge shadow, nostrils; disgust wrinkles it
    nl = identity.nose_length
    ny = 0.22 * fa * nl - 0.04 * fa * e.nose_wrinkle
    cv.line(np.array([[0.02, ey + 0.08], [-0.06, ny]]), (skin * 0.72).tolist(), 0.03)
    cv.ellipse(0, ny, 0.15, 0.05 * fa, (skin * 0.62).tolist(), thickness=0.03, start=0, end=180)
    for k in range(int(round(3 * e.nose_wrinkle))):
        v = ey + 0.06 * fa + 0.05 * fa * k
        cv.line(np.array([[-0.16, v], [0.16, v]]), (skin * 0.5).tolist(), 0.035)

    # mouth: quadratic lips between two corners; an opening shows the dark cavity (and teeth)
    my = 0.5 * fa + 0.03 * fa * e.nose_wrinkle * -1
    mw = 0.42 * (1 + 1.6 * (e.mouth_width - 1))
    lift = 0.26 * fa * e.mouth_curve
    left = (-mw, my - lift - 0.08 * fa * e.mouth_asym)
    right = (mw, my - lift + 0.04 * fa * e.mouth_asym)
    if e.mouth_asym > 0:
        right = (mw, my - lift - 0.1 * fa * e.mouth_asym)
        left = (-mw, my - lift)
    opening = 0.34 * fa * e.mouth_open
    centre_drop = lift * 0.9  # corners up = middle relatively low
    upper = _bezier(left, (0, my + centre_drop - 0.04 * fa - opening * 0.5), right)
    lower = _bezier(right, (0, my + centre_drop + 0.07 * fa + opening * 1.5), left)
    cv.poly(np.concatenate([upper, lower]), identity.lips)
    if opening > 0.01:
        inner_up = _bezier(left, (0, my + centre_drop - opening * 0.3), right)
        inner_lo = _bezier(right, (0, my + centre_drop + opening * 1.25), left)
        cv.poly(np.concatenate([inner_up, inner_lo]), (35, 12, 14))
        if e.teeth > 0:
            teeth_lo = _bezier(right, (0, my + centre_drop + opening * (0.2 + 0.6 * e.teeth)), left)
            cv.poly(np.concatenate([inner_up, teeth_lo]), (235, 232, 225))
    else:
        cv.line(_bezier(left, (0, my + centre_drop), right), (70, 20, 25), 0.05)

    # lighting, then sensor noise
    side = np.linspace(1 - identity.light_side, 1 + identity.light_side, w, dtype=np.float32)[
        None, :, None
    ]
    img *= identity.light * side
    if rng is not None and identity.noise > 0:
        img += rng.normal(0.0, identity.noise, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
