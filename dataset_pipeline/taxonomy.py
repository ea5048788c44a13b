"""The class taxonomy: a versioned YAML file, validated strictly when loaded.

Every later stage (pre-mask prompts, annotation tools' label lists, agreement
thresholds, exports' category tables) reads its classes from here, so a mistake in
the file must be caught when it is loaded, with the file and the field named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

CATEGORIES: tuple[str, ...] = ("background", "rigid", "deformable", "thin", "surface")

#: Agreement threshold (mean pairwise IoU) a class must reach, by category.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "background": 0.0,
    "rigid": 0.85,
    "deformable": 0.75,
    "thin": 0.70,
    "surface": 0.85,
}

DEFAULT_TAXONOMY_FILE = "tabletop_v1.yaml"

_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class TaxonomyError(ValueError):
    """A taxonomy file is malformed; the message names the file, the class and the field."""


@dataclass(frozen=True)
class TaxonomyClass:
    """One class of the taxonomy."""

    id: int
    name: str
    category: str
    colour: str
    agreement_threshold: float
    min_width_px: int
    definition: str = ""
    #: What an open-vocabulary detector is asked to find for this class ("a coffee mug"), and
    #: other words for the same thing; both are queries, and a box any of them finds is this class.
    prompts: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()
    #: The detector score a box of this class needs (None: the pipeline's default threshold).
    detection_threshold: float | None = None

    @property
    def text_queries(self) -> tuple[str, ...]:
        """The detector's text queries for this class: prompts, then synonyms, else the name in words.

        >>> TaxonomyClass(1, "robot_arm", "rigid", "#000000", 0.85, 1).text_queries
        ('robot arm',)
        """
        queries = tuple(dict.fromkeys([*self.prompts, *self.synonyms]))
        return queries or (self.name.replace("_", " "),)

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The colour as an (r, g, b) tuple of 0-255 ints."""
        return tuple(int(self.colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


@dataclass(frozen=True)
class Taxonomy:
    """A validated taxonomy: background is id 0, the classes are 1..N with no gap."""

    name: str
    version: int
    classes: tuple[TaxonomyClass, ...]
    source: str = "<memory>"
    _by_name: dict[str, TaxonomyClass] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.classes})

    @property
    def foreground(self) -> tuple[TaxonomyClass, ...]:
        """Classes other than background, in id order."""
        return self.classes[1:]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.classes]

    def by_name(self, name: str) -> TaxonomyClass:
        """The class called ``name``; a KeyError lists the known names otherwise."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"unknown class {name!r}; known classes: {', '.join(self.names)}") from None

    def by_id(self, class_id: int) -> TaxonomyClass:
        if not 0 <= class_id < len(self.classes):
            raise KeyError(f"unknown class id {class_id}; valid ids are 0..{len(self.classes) - 1}")
        return self.classes[class_id]

    def palette(self) -> list[tuple[int, int, int]]:
        """RGB colour per class id (index = id), for semantic PNGs and overlays."""
        return [c.rgb for c in self.classes]

    @property
    def tag(self) -> str:
        """``name@vN``: the string recorded with everything made under this taxonomy."""
        return f"{self.name}@v{self.version}"


def default_taxonomy_path() -> Path:
    """Path of the packaged default taxonomy (tabletop manipulation)."""
    return Path(str(resources.files("dataset_pipeline.taxonomies") / DEFAULT_TAXONOMY_FILE))


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load and validate a taxonomy YAML file; the packaged default when ``path`` is None.

    >>> tax = load_taxonomy()
    >>> tax.by_name("gripper").category, tax.by_name("gripper").agreement_threshold
    ('thin', 0.7)
    """
    file = Path(path) if path is not None else default_taxonomy_path()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaxonomyError(f"{file}: cannot read taxonomy file ({exc.strerror or exc})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TaxonomyError(f"{file}: not valid YAML ({exc})") from None
    return parse_taxonomy(document, source=str(file))


def parse_taxonomy(document: Any, source: str = "<memory>") -> Taxonomy:
    """Validate a taxonomy already parsed from YAML (a mapping with ``name``, ``version``, ``classes``)."""
    if not isinstance(document, dict):
        raise TaxonomyError(f"{source}: the top level must be a mapping with name, version and classes")
    for key in ("name", "version", "classes"):
        if key not in document:
            raise TaxonomyError(f"{source}: missing top-level field {key!r}")
    version = document["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TaxonomyError(f"{source}: field 'version' must be a positive integer, got {version!r}")
    raw_classes = document["classes"]
    if not isinstance(raw_classes, list) or not raw_classes:
        raise TaxonomyError(f"{source}: field 'classes' must be a non-empty list")

    classes = [_parse_class(entry, index, source) for index, entry in enumerate(raw_classes)]

    seen_ids: dict[int, str] = {}
    seen_names: dict[str, int] = {}
    for cls in classes:
        if cls.id in seen_ids:
            raise TaxonomyError(
                f"{source}: duplicate class id {cls.id} (classes {seen_ids[cls.id]!r} and {cls.name!r})"
            )
        if cls.name in seen_names:
            raise TaxonomyError(
                f"{source}: duplicate class name {cls.name!r} (ids {seen_names[cls.name]} and {cls.id})"
            )
        seen_ids[cls.id] = cls.name
        seen_names[cls.name] = cls.id

    classes.sort(key=lambda c: c.id)
    background = [c for c in classes if c.category == "background"]
    if classes[0].id != 0 or classes[0].category != "background":
        raise TaxonomyError(
            f"{source}: class id 0 must be the background class (category 'background'), "
            f"got {classes[0].name!r} with id {classes[0].id} and category {classes[0].category!r}"
        )
    if len(background) != 1:
        raise TaxonomyError(
            f"{source}: exactly one class may have category 'background', "
            f"found {[c.name for c in background]}"
        )
    expected = list(range(len(classes)))
    actual = [c.id for c in classes]
    if actual != expected:
        missing = sorted(set(expected) - set(actual))
        raise TaxonomyError(
            f"{source}: class ids must be contiguous 0..{len(classes) - 1}; got {actual} (missing {missing})"
        )
    return Taxonomy(name=str(document["name"]), version=version, classes=tuple(classes), source=source)


def _parse_class(entry: Any, index: int, source: str) -> TaxonomyClass:
    where = f"{source}: classes[{index}]"
    if not isinstance(entry, dict):
        raise TaxonomyError(f"{where}: each class must be a mapping, got {type(entry).__name__}")
    for key in ("id", "name", "category", "colour"):
        if key not in entry:
            raise TaxonomyError(f"{where}: missing field {key!r}")
    name = entry["name"]
    where = f"{source}: class {name!r} (classes[{index}])"
    class_id = entry["id"]
    if not isinstance(class_id, int) or isinstance(class_id, bool) or class_id < 0:
        raise TaxonomyError(f"{where}: field 'id' must be a non-negative integer, got {class_id!r}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise TaxonomyError(f"{where}: field 'name' must be lower_snake_case letters/digits, got {name!r}")
    category = entry["category"]
    if category not in CATEGORIES:
        raise TaxonomyError(
            f"{where}: field 'category' is {category!r}; known categories: {', '.join(CATEGORIES)}"
        )
    colour = entry["colour"]
    if not isinstance(colour, str) or not _COLOUR.match(colour):
        raise TaxonomyError(f"{where}: field 'colour' must be '#rrggbb', got {colour!r}")
    threshold = entry.get("agreement_threshold", DEFAULT_THRESHOLDS[category])
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
        raise TaxonomyError(
            f"{where}: field 'agreement_threshold' must be a number in [0, 1], got {threshold!r}"
        )
    min_width = entry.get("min_width_px", 1)
    if not isinstance(min_width, int) or isinstance(min_width, bool) or min_width < 1:
        raise TaxonomyError(f"{where}: field 'min_width_px' must be an integer >= 1, got {min_width!r}")
    unknown = set(entry) - {
        "id",
        "name",
        "category",
        "colour",
        "agreement_threshold",
        "min_width_px",
        "definition",
        "prompts",
        "synonyms",
        "detection_threshold",
    }
    if unknown:
        raise TaxonomyError(f"{where}: unknown field(s) {sorted(unknown)}")
    detection_threshold = entry.get("detection_threshold")
    if detection_threshold is not None and (
        not isinstance(detection_threshold, (int, float))
        or isinstance(detection_threshold, bool)
        or not 0 <= detection_threshold <= 1
    ):
        raise TaxonomyError(
            f"{where}: field 'detection_threshold' must be a number in [0, 1], got {detection_threshold!r}"
        )
    return TaxonomyClass(
        id=class_id,
        name=name,
        category=category,
        colour=colour.lower(),
        agreement_threshold=float(threshold),
        min_width_px=min_width,
        definition=str(entry.get("definition", "")),
        prompts=_phrases(entry, "prompts", where),
        synonyms=_phrases(entry, "synonyms", where),
        detection_threshold=None if detection_threshold is None else float(detection_threshold),
    )


def _phrases(entry: dict, key: str, where: str) -> tuple[str, ...]:
    """A class's list of detector phrases: each a non-empty string (a bare string is one phrase)."""
    value = entry.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise TaxonomyError(f"{where}: field {key!r} must be a list of non-empty strings, got {value!r}")
    return tuple(v.strip() for v in value)
