"""Procedurally rendered tabletop scenes: the pictures of the embedded demo data.

Scenes are tabletops seen from a fixed camera: a support surface, graspable target
objects (blocks, fruit, utensils with thin handles), a container, rigid and deformable
obstacles (cloth with an irregular outline, thin cables), a robot arm with a two-finger
gripper reaching for the target, and in some episodes a human hand. Episodes are runs of
consecutive frames in one scene under one lighting, with small camera and object motion,
so the arm and the hand occlude what lies under them. Everything is deterministic by seed.

>>> frames = list(render_episode(scene_index=0, lighting="dim", n_frames=2, seed=1))
>>> frames[0].image.shape, frames[0].depth.dtype, len(frames[0].instances) > 5
((480, 640, 3), dtype('uint16'), True)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dataset_pipeline.masks import mask_bbox

WIDTH, HEIGHT = 640, 480
LIGHTINGS: tuple[str, ...] = ("daylight", "dim", "warm")
SCENES: tuple[tuple[str, str], ...] = (
    ("kitchen_a", "realsense_d435i"),
    ("kitchen_b", "realsense_d435i"),
    ("kitchen_c", "zed2i"),
    ("lab_a", "oak_d_pro"),
    ("lab_b", "oak_d_pro"),
    ("warehouse_a", "zed2i"),
)


@dataclass(frozen=True)
class Instance:
    """One visible object instance of a rendered frame."""

    class_name: str
    z_order: int
    mask: np.ndarray  # bool (H, W), visible part only


@dataclass(frozen=True)
class Frame:
    """One rendered frame with its ground truth."""

    scene_id: str
    camera_model: str
    lighting: str
    episode_id: str
    frame_index: int
    image: np.ndarray  # uint8 (H, W, 3) RGB
    depth: np.ndarray  # uint16 (H, W) millimetres
    instances: list[Instance]


# ---------------------------------------------------------------------------------------
# shapes: each returns a boolean mask of the full image, drawn with OpenCV


def _blank() -> np.ndarray:
    return np.zeros((HEIGHT, WIDTH), dtype=np.uint8)


def _polygon(points: np.ndarray) -> np.ndarray:
    import cv2

    canvas = _blank()
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
    return canvas.astype(bool)


def _ellipse(cx: float, cy: float, ax: float, ay: float, angle: float) -> np.ndarray:
    import cv2

    canvas = _blank()
    cv2.ellipse(canvas, (round(cx), round(cy)), (max(1, round(ax)), max(1, round(ay))), angle, 0, 360, 1, -1)
    return canvas.astype(bool)


def _polyline(points: np.ndarray, thickness: int) -> np.ndarray:
    import cv2

    canvas = _blank()
    cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, 1, thickness=thickness)
    return canvas.astype(bool)


def _rotated_rect(cx: float, cy: float, w: float, h: float, angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return _polygon(corners @ rot.T + [cx, cy])


def _blob(rng: np.random.Generator, cx: float, cy: float, radius: float, roughness: float) -> np.ndarray:
    """An irregular, cloth-like outline: a circle with smoothed random radial noise."""
    n = 48
    noise = rng.normal(0, roughness, n)
    kernel = np.array([0.25, 0.5, 0.25])
    for _ in range(3):
        noise = np.convolve(np.r_[noise[-1], noise, noise[0]], kernel, mode="valid")
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    radii = radius * (1 + noise) * np.where(np.arange(n) % 7 == 0, 0.92, 1.0)  # folds
    points = np.c_[cx + radii * np.cos(angles) * 1.4, cy + radii * np.sin(angles) * 0.8]
    return _polygon(points)


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int = 40) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


# ---------------------------------------------------------------------------------------
# episode layout and rendering


@dataclass(frozen=True)
class _Layout:
    table: np.ndarray
    table_rgb: tuple[int, int, int]
    wall_rgb: tuple[int, int, int]
    cloth: tuple[float, float, float]
    cloth_rgb: tuple[int, int, int]
    cable: tuple[np.ndarray, np.ndarray, np.ndarray]
    bowl: tuple[float, float, float, float]
    bowl_rgb: tuple[int, int, int]
    bottle: tuple[float, float, float]
    targets: list[tuple[str, float, float, float, tuple[int, int, int]]]
    arm_base: np.ndarray
    arm_rgb: tuple[int, int, int]
    hand_side: int  # -1 left, +1 right, 0 no hand in this episode


def _rgb(rng: np.random.Generator, low: int = 30, high: int = 230) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(low, high, 3))  # type: ignore[return-value]


def _layout(rng: np.random.Generator, scene_rng: np.random.Generator) -> _Layout:
    top = scene_rng.uniform(150, 190)
    inset = scene_rng.uniform(60, 140)
    table = np.array([[inset, top], [WIDTH - inset, top], [WIDTH + 40, HEIGHT + 5], [-40, HEIGHT + 5]])
    cable_start = np.array([rng.uniform(20, 200), HEIGHT - rng.uniform(10, 60)])
    cable_end = np.array([rng.uniform(400, 620), top + rng.uniform(40, 120)])
    cable_mid = (cable_start + cable_end) / 2 + rng.normal(0, 60, 2)
    kinds = ["block", "fruit", "utensil"]
    targets = []
    for k in range(int(rng.integers(1, 3))):
        kind = kinds[int(rng.integers(0, 3))] if k else kinds[int(rng.integers(0, 3))]
        targets.append(
            (kind, rng.uniform(220, 520), rng.uniform(top + 90, HEIGHT - 70), rng.uniform(0, 180), _rgb(rng))
        )
    return _Layout(
        table=table,
        table_rgb=_rgb(scene_rng, 90, 200),
        wall_rgb=_rgb(scene_rng, 150, 240),
        cloth=(rng.uniform(90, 250), rng.uniform(top + 80, HEIGHT - 80), rng.uniform(45, 70)),
        cloth_rgb=_rgb(rng),
        cable=(cable_start, cable_mid, cable_end),
        bowl=(
            rng.uniform(380, 560),
            rng.uniform(top + 60, HEIGHT - 100),
            rng.uniform(45, 65),
            rng.uniform(0.5, 0.7),
        ),
        bowl_rgb=_rgb(rng),
        bottle=(rng.uniform(80, 560), rng.uniform(top + 20, top + 70), rng.uniform(0, 20)),
        targets=targets,
        arm_base=np.array([rng.uniform(200, 440), -30.0]),
        arm_rgb=_rgb(scene_rng, 160, 230),
        hand_side=int(rng.choice([-1, 0, 1])),
    )


def _shapes(
    layout: _Layout, t: float, rng: np.random.Generator
) -> list[tuple[str, int, np.ndarray, tuple[int, int, int], float]]:
    """(class, z_order, full mask, colour, height above table in mm) for time t in [0, 1]."""
    shapes: list[tuple[str, int, np.ndarray, tuple[int, int, int], float]] = []
    shapes.append(("support_surface", 0, _polygon(layout.table), layout.table_rgb, 0.0))
    cx, cy, r = layout.cloth
    cloth_rng = np.random.default_rng(int(cx * 1000 + cy))  # same outline in every frame
    shapes.append(("obstacle_deformable", 1, _blob(cloth_rng, cx, cy, r, 0.18), layout.cloth_rgb, 5.0))
    p0, p1, p2 = layout.cable
    shapes.append(("obstacle_deformable", 1, _polyline(_bezier(p0, p1, p2), 4), (25, 25, 25), 5.0))
    bx, by, bax, ratio = layout.bowl
    shapes.append(("container", 2, _ellipse(bx, by, bax, bax * ratio, 0), layout.bowl_rgb, 60.0))
    ox, oy, angle = layout.bottle
    bottle = _rotated_rect(ox, oy, 26, 70, angle) | _rotated_rect(ox, oy - 45, 10, 24, angle)
    shapes.append(("obstacle_rigid", 2, bottle, (40, 120, 60), 200.0))

    grasp_target = None
    for kind, tx, ty, angle, rgb in layout.targets:
        if kind == "block":
            mask = _rotated_rect(tx, ty, 44, 30, angle)
        elif kind == "fruit":
            mask = _ellipse(tx, ty, 22, 20, angle)
        else:  # utensil: a spoon head with a 3-px handle, the thin structure of the scene
            a = np.deg2rad(angle)
            tip = np.array([tx + 60 * np.cos(a), ty + 60 * np.sin(a)])
            mask = _ellipse(tx, ty, 14, 9, angle) | _polyline(np.array([[tx, ty], tip]), 3)
        shapes.append(("target_object", 3, mask, rgb, 40.0))
        grasp_target = grasp_target if grasp_target is not None else np.array([tx, ty])

    # The arm reaches from its base at the top edge towards the first target.
    assert grasp_target is not None
    wrist = layout.arm_base + (grasp_target - layout.arm_base) * (0.35 + 0.6 * t) + rng.normal(0, 1.0, 2)
    elbow = (layout.arm_base + wrist) / 2 + np.array([70.0, 10.0])
    arm = _polyline(np.array([layout.arm_base, elbow]), 34) | _polyline(np.array([elbow, wrist]), 26)
    shapes.append(("robot_arm", 5, arm, layout.arm_rgb, 300.0))
    direction = (wrist - elbow) / (np.linalg.norm(wrist - elbow) + 1e-6)
    normal = np.array([-direction[1], direction[0]])
    opening = 16 * (1 - 0.6 * t)
    palm = wrist + direction * 12
    gripper = _polyline(np.array([wrist - normal * 18, wrist + normal * 18]), 10)
    for side in (-1, 1):
        root = palm + side * normal * opening
        gripper |= _polyline(np.array([wrist + side * normal * 16, root, root + direction * 30]), 5)
    shapes.append(("gripper", 6, gripper, (70, 70, 80), 250.0))

    if layout.hand_side and 0.3 < t < 0.9:
        edge = 0 if layout.hand_side < 0 else WIDTH
        hx = edge - layout.hand_side * (60 + 80 * np.sin(np.pi * (t - 0.3) / 0.6))
        hy = HEIGHT - 130
        hand = _ellipse(hx, hy, 34, 28, 0) | _polyline(np.array([[edge, hy + 30], [hx, hy]]), 40)
        for k in range(4):
            fx = hx - layout.hand_side * 38
            hand |= _polyline(np.array([[hx, hy - 18 + 12 * k], [fx, hy - 26 + 16 * k]]), 8)
        hand |= _polyline(np.array([[hx, hy + 14], [hx - layout.hand_side * 10, hy + 44]]), 9)
        shapes.append(("human_hand", 7, hand, (224, 172, 138), 150.0))
    return shapes


_LIGHT = {
    "daylight": (np.array([1.0, 1.0, 1.0]), 1.0, 4.0),
    "dim": (np.array([0.9, 0.95, 1.05]), 0.45, 9.0),
    "warm": (np.array([1.15, 0.95, 0.7]), 0.85, 5.0),
}


def render_episode(
    scene_index: int, lighting: str, n_frames: int, seed: int, episode_index: int = 0
) -> Iterator[Frame]:
    """Render ``n_frames`` consecutive frames of one episode (deterministic by the arguments)."""
    import cv2

    if lighting not in _LIGHT:
        raise ValueError(f"lighting {lighting!r} is not one of {sorted(_LIGHT)}")
    scene_id, camera_model = SCENES[scene_index % len(SCENES)]
    scene_rng = np.random.default_rng([seed, scene_index, 0])
    rng = np.random.default_rng([seed, scene_index, episode_index + 1])
    layout = _layout(rng, scene_rng)
    gain, brightness, noise_sigma = _LIGHT[lighting]
    episode_id = f"{scene_id}-ep{episode_index:03d}"
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    vignette = 1.0 - 0.35 * (((xx - WIDTH / 2) / WIDTH) ** 2 + ((yy - HEIGHT / 2) / HEIGHT) ** 2)
    light = (vignette[..., None] * (gain * brightness)[None, None, :]).astype(np.float32)
    noise = np.empty((HEIGHT, WIDTH, 3), dtype=np.float32)
    texture = scene_rng.normal(0, 7, (HEIGHT, WIDTH)).astype(np.float32)
    texture = cv2.GaussianBlur(texture, (0, 0), 1.5)

    for frame_index in range(n_frames):
        t = frame_index / max(1, n_frames - 1)
        frame_rng = np.random.default_rng([seed, scene_index, episode_index + 1, frame_index + 1])
        shapes = _shapes(layout, t, frame_rng)
        image = np.empty((HEIGHT, WIDTH, 3), dtype=np.float32)
        image[:] = layout.wall_rgb
        image += texture[..., None] * 0.5
        depth = (2500 - 0.6 * yy).astype(np.float32)  # wall
        table_depth = 1400 - 1.4 * yy
        instances_full: list[tuple[str, int, np.ndarray]] = []
        for class_name, z_order, mask, rgb, height_mm in shapes:
            box = mask_bbox(mask)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            x0, y0, x1, y1 = max(0, x0 - 1), max(0, y0 - 1), min(WIDTH, x1 + 1), min(HEIGHT, y1 + 1)
            window = (slice(y0, y1), slice(x0, x1))
            local = mask[window]
            shade = 0.75 + 0.25 * (yy[window] - y0) / max(1, y1 - y0)
            fill = np.asarray(rgb, np.float32) * shade[..., None] + texture[window][..., None] * 0.8
            inner = cv2.erode(local.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            fill[local & ~inner] *= 0.75  # darker outline, as real object edges are
            np.copyto(image[window], fill, where=local[..., None])
            depth[window][local] = table_depth[window][local] - height_mm
            instances_full.append((class_name, z_order, mask))
        # Visible masks: painter's order means a later (higher z) shape hides earlier ones.
        instances: list[Instance] = []
        occluder = np.zeros((HEIGHT, WIDTH), dtype=bool)
        for class_name, z_order, mask in reversed(instances_full):
            visible = mask & ~occluder
            occluder |= mask
            if visible.sum() >= 20:
                instances.append(Instance(class_name, z_order, visible))
        instances.reverse()
        shift = frame_rng.normal(0, 0.8, 2)  # camera shake: sub-pixel, image only
        matrix = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], dtype=np.float32)
        image = cv2.warpAffine(image, matrix, (WIDTH, HEIGHT), borderMode=cv2.BORDER_REFLECT)
        image *= light
        cv2.setRNGSeed(int(frame_rng.integers(0, 2**31 - 1)))
        cv2.randn(noise, 0.0, noise_sigma)  # sensor noise; OpenCV's generator is 4x numpy's speed
        image += noise
        image = cv2.GaussianBlur(image, (0, 0), 0.6)
        depth += 3 * frame_rng.standard_normal(depth.shape, dtype=np.float32)
        yield Frame(
            scene_id=scene_id,
            camera_model=camera_model,
            lighting=lighting,
            episode_id=episode_id,
            frame_index=frame_index,
            image=np.clip(image, 0, 255).astype(np.uint8),
            depth=np.clip(depth, 0, 65535).astype(np.uint16),
            instances=instances,
        )
