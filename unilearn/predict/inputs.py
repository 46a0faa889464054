"""What `unilearn predict` runs on: the command line's INPUTs expanded into media items (video
files, frame folders, images), each with its kind, or with the reason it cannot be read.

A folder given on the command line is searched recursively. A folder that directly holds image
files is one *frame folder* when those files look like the frames of one clip, i.e. at least two
of them and all names the same once digits are ignored (`00001.jpg`, `frame_12.png`); otherwise
(AffectNet's hash-named photos, a folder with one image) each image is its own input.
`--folders frames|images` overrides the rule for every folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from unilearn.data.decode import FRAME_EXTENSIONS, VIDEO_EXTENSIONS

KINDS = ("video", "frames", "image")
FOLDER_RULES = ("auto", "frames", "images")
# how `unilearn predict --crop` finds the face (the pipeline does it; here for a torch-free --help)
CROP_MODES = ("auto", "detect", "none")


@dataclass(frozen=True)
class InputItem:
    """One input: `kind` is video, frames or image; `reason` is set when it cannot be run
    (missing path, unsupported format), and then `kind` is what it was taken for, or ""."""

    path: str
    kind: str
    reason: str = ""
    reason_code: str = ""


def discover_inputs(paths: list[str | os.PathLike], folders: str = "auto") -> list[InputItem]:
    """The inputs behind command-line paths, in the order given (a folder's inputs sorted by
    path). Nothing is dropped: a path that is not usable media becomes an item with a reason."""
    if folders not in FOLDER_RULES:
        raise ValueError(f"folders={folders!r}; expected one of {FOLDER_RULES}")
    items: list[InputItem] = []
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        found = _expand(path, folders) if path.is_dir() else [_file_item(path)]
        if path.is_dir() and not found:
            found = [
                InputItem(
                    str(path),
                    "",
                    f"{path}: folder holds no videos ({', '.join(VIDEO_EXTENSIONS)}) or images "
                    f"({', '.join(FRAME_EXTENSIONS)})",
                    "unsupported_format",
                )
            ]
        for item in found:
            if item.path not in seen:  # the same file named twice (or inside a named folder)
                seen.add(item.path)
                items.append(item)
    return items


def _file_item(path: Path) -> InputItem:
    if not path.exists():
        return InputItem(str(path), "", f"{path}: no such file or folder", "unreadable_media")
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return InputItem(str(path), "video")
    if suffix in FRAME_EXTENSIONS:
        return InputItem(str(path), "image")
    return InputItem(
        str(path),
        "",
        f"{path}: unsupported format {suffix or '(no extension)'!r}; expected a video "
        f"({', '.join(VIDEO_EXTENSIONS)}), an image ({', '.join(FRAME_EXTENSIONS)}) or a folder",
        "unsupported_format",
    )


def _expand(folder: Path, rule: str) -> list[InputItem]:
    items = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        here = Path(root)
        images = sorted(f for f in files if Path(f).suffix.lower() in FRAME_EXTENSIONS)
        if images and is_frame_folder(images, rule):
            items.append(InputItem(str(here), "frames"))
            images = []
        for name in sorted(files):
            suffix = Path(name).suffix.lower()
            if suffix in VIDEO_EXTENSIONS:
                items.append(InputItem(str(here / name), "video"))
            elif name in images:
                items.append(InputItem(str(here / name), "image"))
            # other files in a searched folder (index.csv, README) are not inputs: skipped quietly
    return items


def is_frame_folder(image_names: list[str], rule: str = "auto") -> bool:
    """Whether a folder's image files are the frames of one clip (see the module docstring)."""
    if rule != "auto":
        return rule == "frames"
    if len(image_names) < 2:
        return False
    patterns = {re.sub(r"\d+", "#", name.lower()) for name in image_names}
    return len(patterns) == 1 and "#" in next(iter(patterns))
