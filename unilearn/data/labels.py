"""Every dataset's class names, their order, native label ids and the maps between label sets.

This is the only place class orders are defined; everything else imports from here. Canonical
class names are lowercase and the canonical label id is the 0-based position in `classes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LabelSet:
    """One dataset's classes and how its native label values map onto canonical ids."""

    name: str
    classes: tuple[str, ...]
    # native value (as written in the dataset's files, str) -> canonical id
    native: dict[str, int] = field(default_factory=dict)
    # classes that exist natively but are left out of this set (e.g. AffectNet-7 drops contempt)
    excluded: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def id_of(self, native_value: object) -> int:
        """Canonical id of a native label value (`3`, `"Happy"`, `"happiness"`)."""
        key = str(native_value).strip()
        if key in self.native:
            return self.native[key]
        lowered = key.lower()
        if lowered in self.classes:
            return self.classes.index(lowered)
        raise KeyError(
            f"label {native_value!r} is not in the {self.name} label set "
            f"(expected one of {sorted(self.native) or list(self.classes)})"
        )

    def name_of(self, label_id: int) -> str:
        return self.classes[label_id]


_SEVEN = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")

DFEW = LabelSet(
    "dfew",
    _SEVEN,
    # EmoLabel_DataSplit CSVs write 1..7 in this order.
    native={str(i + 1): i for i in range(7)},
)

FERV39K = LabelSet(
    "ferv39k",
    _SEVEN,
    native={name.capitalize(): i for i, name in enumerate(_SEVEN)},
)

_MAFW11 = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
)

# MAFW split files name the class (`00019.mp4 happiness`).
MAFW = LabelSet("mafw", _MAFW11, native={c: i for i, c in enumerate(_MAFW11)})

_AFFECTNET8 = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")

AFFECTNET = LabelSet("affectnet", _AFFECTNET8, native={str(i): i for i in range(8)})

AFFECTNET7 = LabelSet(
    "affectnet7",
    _AFFECTNET8[:7],
    native={str(i): i for i in range(7)},
    excluded=("contempt",),
)

LABEL_SETS: dict[str, LabelSet] = {s.name: s for s in (DFEW, FERV39K, MAFW, AFFECTNET, AFFECTNET7)}

# The datasets ingest knows, their media kind and (for labeled ones) their label set.
DATASETS: dict[str, dict[str, str | None]] = {
    "dfew": {"kind": "video", "label_set": "dfew"},
    "mafw": {"kind": "video", "label_set": "mafw"},
    "ferv39k": {"kind": "video", "label_set": "ferv39k"},
    "affectnet": {"kind": "image", "label_set": "affectnet"},
    "voxceleb2": {"kind": "video", "label_set": None},
}

# Which DFER datasets have 5-fold cross-validation and which one official split.
FOLDS: dict[str, tuple[int, ...]] = {
    "dfew": (1, 2, 3, 4, 5),
    "mafw": (1, 2, 3, 4, 5),
    "ferv39k": (),
}


def get_label_set(name: str) -> LabelSet:
    """The label set called `name` (`dfew`, `ferv39k`, `mafw`, `affectnet`, `affectnet7`)."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise KeyError(f"unknown label set {name!r}; known: {sorted(LABEL_SETS)}") from None


def map_labels(src: str, dst: str) -> dict[int, int]:
    """Canonical id in `src` -> canonical id in `dst`, for classes both sets share by name.

    Used to compare class centres across datasets (Figure 4b): e.g. DFEW `happy` <-> AffectNet
    `happy`, MAFW `happiness` <-> AffectNet `happy`.
    """
    a, b = get_label_set(src), get_label_set(dst)
    canon = {c: _SYNONYMS.get(c, c) for c in a.classes}
    targets = {_SYNONYMS.get(c, c): i for i, c in enumerate(b.classes)}
    return {i: targets[canon[c]] for i, c in enumerate(a.classes) if canon[c] in targets}


# MAFW and AffectNet spell some basic emotions differently from DFEW/FERV39K.
_SYNONYMS = {"happiness": "happy", "sadness": "sad", "anger": "angry"}


def canonical_emotion(name: str) -> str:
    """One spelling per emotion across datasets (`Happy`, `happiness` -> `happy`; `anger` -> `angry`)."""
    key = name.strip().lower()
    return _SYNONYMS.get(key, key)
