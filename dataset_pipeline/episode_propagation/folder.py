"""One episode as files: frames in a folder, PNG label maps of some of them, propagated to all.

Frames are ordered by file name; a keyframe mask is the PNG with its frame's stem. Pixel values
are ids and stay as they are: palette PNGs (DAVIS and most VOS sets), 8/16-bit grey, or 0/255
binary masks come back in their own mode and palette; RGB colour-coded maps are mapped to ids
by colour and back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_pipeline.episode_propagation.core import PropagatedFrame, PropagationError, Propagator

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class MaskEncoding:
    """How the keyframe PNGs store ids, to write the propagated ones the same way."""

    mode: str
    palette: list[int] | None = None
    colours: np.ndarray | None = None  # RGB maps: row k is the colour of id k

    def ids(self, image) -> np.ndarray:
        array = np.asarray(image)
        if self.mode != "RGB":
            return array.astype(np.int32)
        assert self.colours is not None
        flat = array.reshape(-1, 3)
        found = np.full(len(flat), -1, np.int32)
        for k, colour in enumerate(self.colours):
            found[(flat == colour).all(1)] = k
        return found.reshape(array.shape[:2])

    def image(self, labels: np.ndarray):
        from PIL import Image

        if self.mode == "RGB":
            assert self.colours is not None
            return Image.fromarray(self.colours[labels].astype(np.uint8), "RGB")
        if self.mode in ("I;16", "I"):
            return Image.fromarray(labels.astype(np.uint16 if self.mode == "I;16" else np.int32))
        pixels = np.ascontiguousarray(labels.astype(np.uint8))
        size = (pixels.shape[1], pixels.shape[0])
        if self.mode == "P":  # the ids are the palette indices: written as they are, same palette
            out = Image.frombytes("P", size, pixels.tobytes())
            if self.palette:
                out.putpalette(self.palette)
            return out
        return Image.frombytes("L", size, pixels.tobytes())


class FolderFrames(Sequence[np.ndarray]):
    """The episode's frames, decoded one at a time; an unreadable one names the episode and the file."""

    def __init__(self, paths: list[Path], episode: str) -> None:
        self.paths, self.episode = paths, episode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):  # an int: the episode is read frame by frame
        from dataset_pipeline.images import decode_image

        path = self.paths[index]
        try:
            return decode_image(path.read_bytes(), path.name).rgb
        except (OSError, ValueError) as exc:
            raise PropagationError(self.episode, f"frame {index} ({path.name})", str(exc)) from None


def read_episode(
    frames_dir: Path, masks_dir: Path
) -> tuple[FolderFrames, dict[int, np.ndarray], MaskEncoding]:
    """The frames, the keyframe label maps by frame position, and the masks' encoding."""
    from PIL import Image

    episode = frames_dir.name
    if not frames_dir.is_dir():
        raise PropagationError(episode, "frames", f"{frames_dir} is not a folder")
    if not masks_dir.is_dir():
        raise PropagationError(episode, "keyframe masks", f"{masks_dir} is not a folder")
    paths = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file())
    positions = {p.stem: k for k, p in enumerate(paths)}
    frames = FolderFrames(paths, episode)
    masks = sorted(p for p in masks_dir.iterdir() if p.suffix.lower() == ".png")
    if not masks:
        raise PropagationError(episode, "keyframe masks", f"no PNG label map in {masks_dir}")
    images, modes = {}, set()
    for path in masks:
        if path.stem not in positions:
            raise PropagationError(
                episode,
                f"mask {path.name}",
                f"names no frame of the episode ({len(paths)} frames in {frames_dir})",
            )
        try:
            with Image.open(path) as image:
                image.load()
                images[positions[path.stem]] = image.copy()
        except OSError as exc:
            raise PropagationError(episode, f"mask {path.name}", f"not a readable PNG ({exc})") from None
        modes.add(images[positions[path.stem]].mode)
    if len(modes) > 1:
        raise PropagationError(
            episode, "keyframe masks", f"mixed PNG modes {sorted(modes)}: ids must be stored one way"
        )
    mode = modes.pop()
    if mode not in ("P", "L", "I;16", "I", "RGB", "1"):
        raise PropagationError(
            episode, "keyframe masks", f"PNG mode {mode!r} is not a label map (P, L, I;16, RGB)"
        )
    encoding = MaskEncoding("L" if mode == "1" else mode)
    if mode == "1":
        images = {k: v.convert("L") for k, v in images.items()}
    if mode == "P":
        encoding.palette = next(iter(images.values())).getpalette()
    if mode == "RGB":
        colours = np.unique(np.concatenate([np.asarray(v).reshape(-1, 3) for v in images.values()]), axis=0)
        black = (colours == 0).all(1)
        encoding.colours = np.concatenate([colours[black], colours[~black]])  # black, if present, is id 0
    keyframes = {k: encoding.ids(v) for k, v in sorted(images.items())}
    return frames, keyframes, encoding


@dataclass
class FolderResult:
    frames: list[PropagatedFrame]
    names: list[str]
    episode: FolderFrames  # the frames as read (for the consistency pass)


def propagate_folder(
    frames_dir: Path, masks_dir: Path, out_dir: Path, propagator: Propagator
) -> FolderResult:
    """Propagate one episode of files and write one PNG per frame into ``out_dir`` (each whole,
    under a temporary name first; nothing is written when the input is refused)."""
    frames, keyframes, encoding = read_episode(frames_dir, masks_dir)
    result = propagator.propagate(frames, keyframes, frames_dir.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    for frame in result:
        target = out_dir / (frames.paths[frame.index].stem + ".png")
        partial = target.with_name(target.name + ".partial")
        encoding.image(frame.labels).save(partial, format="PNG")
        partial.replace(target)
    return FolderResult(result, [p.name for p in frames.paths], frames)
