"""annotation_guideline: the rules people label by, as a versioned document with example crops.

A rules file (YAML, beside the taxonomy: per class a definition, a boundary rule, a minimum
width and edge cases; global rules for occlusion, overlaps, transparent and reflective surfaces
and ambiguous classes) and the taxonomy make one **revision**. Each revision has a number and an
effective date (the rules file's ``effective_date``, else the time it was made) and is kept in
the store forever (``guidelines/r<NNN>/``); a change to the rules or to the taxonomy makes the
next one, so every annotation can be traced to the rules in force at its ``created_at``
(:func:`revision_in_force`). Its document, Markdown and a self-contained HTML file, shows per
class correct examples (gold images where annotators agree best) and incorrect ones (the largest
disagreements, both annotators' outlines), cut from the corpus as it stands when the revision is
made.
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataset_pipeline import layout
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import DEFAULT_TAXONOMY_FILE, Taxonomy

#: The rules every guideline states for all classes.
GLOBAL_RULES: tuple[str, ...] = ("occlusion", "overlaps", "transparent", "reflective", "ambiguous")
#: Example crops per class and kind (correct / incorrect): 2 + 2, within the 3-5 teams use.
EXAMPLES_PER_KIND = 2
#: A gold image's class is a correct example only when its annotators agree at least this well.
CORRECT_MIN_IOU = 0.85
#: ... and an incorrect one when its worst pair is below this.
INCORRECT_MAX_IOU = 0.8
CROP_PX = 240
#: Outline colours of the two annotators of an incorrect example, and of a correct one.
PAIR_COLOURS = ((255, 140, 0), (30, 144, 255))
CORRECT_COLOUR = (40, 200, 80)


class GuidelineError(ValueError):
    """A rules file that cannot be used; the message names the file, the class and the field."""


@dataclass(frozen=True)
class ClassRules:
    definition: str
    boundary: str
    min_width_px: int
    edge_cases: tuple[str, ...] = ()


@dataclass(frozen=True)
class GuidelineRules:
    title: str
    global_rules: dict[str, str]
    classes: dict[str, ClassRules]
    effective_date: datetime | None = None
    source: str = "<memory>"

    def content(self) -> dict[str, Any]:
        """What a revision is made of (not where the file was, nor when it takes effect), as JSON
        reads it back (lists, not tuples), so that a stored revision compares equal to it."""
        content = {
            "title": self.title,
            "global": dict(self.global_rules),
            "classes": {name: asdict(rules) for name, rules in self.classes.items()},
        }
        return json.loads(json.dumps(content))


def default_rules_path(taxonomy_file: str = DEFAULT_TAXONOMY_FILE) -> Path:
    """The packaged rules of the packaged taxonomy (``<taxonomy>.guideline.yaml`` beside it)."""
    stem = Path(taxonomy_file).stem
    return Path(str(resources.files("dataset_pipeline.taxonomies") / f"{stem}.guideline.yaml"))


def load_rules(path: str | Path | None, taxonomy: Taxonomy) -> GuidelineRules:
    """Read and validate a rules file against the taxonomy: every class has rules, none is unknown.

    >>> from dataset_pipeline.taxonomy import load_taxonomy
    >>> rules = load_rules(None, load_taxonomy())
    >>> rules.classes["gripper"].min_width_px, sorted(rules.global_rules)[:2]
    (1, ['ambiguous', 'occlusion'])
    """
    import yaml

    file = Path(path) if path else default_rules_path()
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GuidelineError(f"{file}: cannot read the guideline rules ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise GuidelineError(f"{file}: not valid YAML ({exc})") from None
    return parse_rules(document, taxonomy, str(file))


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise GuidelineError(f"{where}: must be a non-empty text")
    return " ".join(value.split())


def parse_rules(document: Any, taxonomy: Taxonomy, source: str = "<memory>") -> GuidelineRules:
    if not isinstance(document, dict):
        raise GuidelineError(f"{source}: the top level must be a mapping with title, global and classes")
    if document.get("taxonomy") not in (None, taxonomy.name):
        raise GuidelineError(
            f"{source}: field 'taxonomy' is {document['taxonomy']!r}, the taxonomy in force is {taxonomy.name!r}"
        )
    title = _text(
        document.get("title", f"{taxonomy.name} segmentation guideline"), f"{source}: field 'title'"
    )
    raw_global = document.get("global")
    if not isinstance(raw_global, dict):
        raise GuidelineError(f"{source}: field 'global' must be a mapping of {', '.join(GLOBAL_RULES)}")
    missing = [k for k in GLOBAL_RULES if k not in raw_global]
    if missing:
        raise GuidelineError(f"{source}: field 'global' lacks the rule(s) {', '.join(missing)}")
    global_rules = {k: _text(v, f"{source}: global rule {k!r}") for k, v in raw_global.items()}
    raw_classes = document.get("classes")
    if not isinstance(raw_classes, dict):
        raise GuidelineError(f"{source}: field 'classes' must be a mapping of class name to rules")
    known = {c.name for c in taxonomy.foreground}
    unknown = sorted(set(raw_classes) - known)
    if unknown:
        raise GuidelineError(
            f"{source}: class {unknown[0]!r} is not in the taxonomy {taxonomy.tag} (known: {', '.join(sorted(known))})"
        )
    classes = {}
    for cls in taxonomy.foreground:
        entry = raw_classes.get(cls.name)
        where = f"{source}: class {cls.name!r}"
        if not isinstance(entry, dict):
            raise GuidelineError(f"{where}: no rules (definition, boundary, min_width_px)")
        width = entry.get("min_width_px")
        if not isinstance(width, int) or isinstance(width, bool) or width < 0:
            raise GuidelineError(f"{where}: field 'min_width_px' must be a whole number >= 0, got {width!r}")
        cases = entry.get("edge_cases", [])
        if not isinstance(cases, list):
            raise GuidelineError(f"{where}: field 'edge_cases' must be a list of texts")
        classes[cls.name] = ClassRules(
            definition=_text(entry.get("definition"), f"{where}: field 'definition'"),
            boundary=_text(entry.get("boundary"), f"{where}: field 'boundary'"),
            min_width_px=width,
            edge_cases=tuple(_text(c, f"{where}: field 'edge_cases'") for c in cases),
        )
    effective = document.get("effective_date")
    when = None
    if effective is not None:
        try:
            when = pd.Timestamp(effective)
        except (ValueError, TypeError):
            raise GuidelineError(f"{source}: field 'effective_date' {effective!r} is not a date") from None
        when = (when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")).to_pydatetime()
    return GuidelineRules(title, global_rules, classes, when, source)


def revision_digest(rules: GuidelineRules, taxonomy: Taxonomy) -> str:
    """Equal digests = the same rules over the same taxonomy (so: the same revision)."""
    content = {
        "rules": rules.content(),
        "taxonomy": [asdict(c) for c in taxonomy.classes],
        "tag": taxonomy.tag,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- the archive of revisions -----------------------------------------------------------------


def read_revisions(store: DatasetStore) -> list[dict]:
    """Every revision made so far, oldest first (empty before the first)."""
    if not store.exists(layout.GUIDELINE_REVISIONS_KEY):
        return []
    return list(json.loads(store.read_bytes(layout.GUIDELINE_REVISIONS_KEY)))


def changes_between(before: dict | None, after: dict) -> list[str]:
    """What a revision changed, in words a reader scans (rules content dicts).

    >>> changes_between({"global": {"a": "x"}, "classes": {"c": {"boundary": "y"}}},
    ...                 {"global": {"a": "x2"}, "classes": {"c": {"boundary": "y"}}})
    ['global rule a']
    """
    if before is None:
        return ["first revision"]
    changed = [
        f"global rule {k}" for k in sorted(after["global"]) if before["global"].get(k) != after["global"][k]
    ]
    for name, rules in after["classes"].items():
        old = before["classes"].get(name)
        if old is None:
            changed.append(f"class {name} (new)")
            continue
        fields = [k for k in rules if old.get(k) != rules[k]]
        if fields:
            changed.append(f"class {name}: {', '.join(fields)}")
    changed += [f"class {n} (removed)" for n in before["classes"] if n not in after["classes"]]
    return changed or ["taxonomy only"]


@dataclass
class RevisionOutcome:
    revision: dict
    new: bool
    revisions: list[dict] = field(default_factory=list)


def register_revision(
    store: DatasetStore, rules: GuidelineRules, taxonomy: Taxonomy, now: datetime
) -> RevisionOutcome:
    """The revision in force for these rules and taxonomy: the latest one when nothing changed,
    else a new one (its ``rules.json`` first, then the index, so a crash leaves no half revision)."""
    revisions = read_revisions(store)
    digest = revision_digest(rules, taxonomy)
    if revisions and revisions[-1]["digest"] == digest:
        return RevisionOutcome(revisions[-1], False, revisions)
    effective = rules.effective_date or now
    if revisions and pd.Timestamp(effective) < pd.Timestamp(revisions[-1]["effective_from"]):
        raise GuidelineError(
            f"{rules.source}: field 'effective_date' {effective.isoformat()} is before revision "
            f"{revisions[-1]['revision']}'s ({revisions[-1]['effective_from']}); a revision cannot take effect earlier"
        )
    number = revisions[-1]["revision"] + 1 if revisions else 1
    before = (
        json.loads(
            store.read_bytes(layout.guideline_file(revisions[-1]["revision"], layout.GUIDELINE_RULES_FILE))
        )["rules"]
        if revisions
        else None
    )
    content = rules.content()
    revision = {
        "revision": number,
        "effective_from": effective.astimezone(UTC).isoformat(),
        "created_at": now.astimezone(UTC).isoformat(),
        "digest": digest,
        "rules_file": rules.source,
        "taxonomy": taxonomy.tag,
        "changes": changes_between(before, content),
    }
    snapshot = {"revision": revision, "rules": content, "taxonomy": [asdict(c) for c in taxonomy.classes]}
    store.write_bytes(
        layout.guideline_file(number, layout.GUIDELINE_RULES_FILE),
        json.dumps(snapshot, indent=2, default=str).encode(),
    )
    revisions = [*revisions, revision]
    store.write_bytes(layout.GUIDELINE_REVISIONS_KEY, json.dumps(revisions, indent=2).encode())
    return RevisionOutcome(revision, True, revisions)


def revision_in_force(created_at: pd.Series, revisions: list[dict]) -> pd.Series:
    """The revision number in force at each time (the latest that took effect at or before it);
    missing before the first revision or where the time is unknown.

    >>> revs = [{"revision": 1, "effective_from": "2026-11-01T00:00:00+00:00"},
    ...         {"revision": 2, "effective_from": "2026-11-25T12:00:00+00:00"}]
    >>> times = pd.Series(pd.to_datetime(["2026-10-01T00:00", "2026-11-25T11:00", "2026-11-26T00:00", None], utc=True))
    >>> revision_in_force(times, revs).tolist()
    [<NA>, 1, 2, <NA>]
    """
    out = pd.Series(pd.NA, index=created_at.index, dtype="Int64")
    if not revisions or not len(created_at):
        return out
    times = pd.to_datetime(created_at, utc=True, errors="coerce", format="ISO8601")
    starts = pd.to_datetime([r["effective_from"] for r in revisions], utc=True, format="ISO8601")
    numbers = np.array([r["revision"] for r in revisions])
    known = times.notna().to_numpy()
    at = np.searchsorted(starts.to_numpy(), times[known].to_numpy(), side="right") - 1
    values = np.where(at >= 0, numbers[np.clip(at, 0, None)], -1)
    out[known] = pd.array(values, dtype="Int64")
    out[out == -1] = pd.NA
    return out


# -- example crops ----------------------------------------------------------------------------


def class_pair_agreement(annotations: pd.DataFrame) -> pd.DataFrame:
    """Per gold image and class: the mean and the worst pairwise IoU of the annotators' class masks,
    and the worst pair (a class one of a pair did not draw is IoU 0 for that pair)."""
    from dataset_pipeline.masks import rle_pair_iou, rle_union

    columns = ["image_id", "class_id", "mean_iou", "worst_iou", "worst_pair", "both_drew"]
    rows: list[dict] = []
    if not len(annotations):
        return pd.DataFrame(rows, columns=columns)
    gold = annotations[annotations.groupby("image_id").annotator_id.transform("nunique") >= 2]
    for image_id, image_rows in gold.groupby("image_id", sort=True):
        annotators = sorted(image_rows.annotator_id.unique())
        for class_id, class_rows in image_rows.groupby("class_id"):
            masks = {
                annotator: rle_union(
                    [
                        {"size": [int(r.height), int(r.width)], "counts": r.rle.encode()}
                        for r in mine.itertuples()
                    ]
                )
                for annotator, mine in class_rows.groupby("annotator_id")
            }
            pairs = []
            for a, b in itertools.combinations(annotators, 2):
                iou = rle_pair_iou(masks.get(a), masks.get(b))  # 0 when one of them drew nothing
                if iou is None:
                    continue
                # a pair who both drew the class and disagree on its outline teaches a boundary rule;
                # one who missed it teaches less: at equal IoU, the former is the worse pair
                pairs.append((iou, not (a in masks and b in masks), a, b))
            if pairs:
                worst = min(pairs)
                rows.append(
                    {
                        "image_id": image_id,
                        "class_id": int(class_id),
                        "mean_iou": float(np.mean([p[0] for p in pairs])),
                        "worst_iou": worst[0],
                        "worst_pair": (worst[2], worst[3]),
                        "both_drew": not worst[1],
                    }
                )
    return pd.DataFrame(rows, columns=columns)


def pick_examples(
    agreement: pd.DataFrame, taxonomy: Taxonomy, per_kind: int = EXAMPLES_PER_KIND
) -> pd.DataFrame:
    """Per class: the ``per_kind`` gold images where annotators agree best (correct) and the
    ``per_kind`` where a pair disagrees most (incorrect), each image at most once per class; with
    the picture's file name inside the revision folder."""
    rows = []
    for class_id, group in agreement.groupby("class_id", sort=True):
        good = group[group.mean_iou >= CORRECT_MIN_IOU].sort_values(
            ["mean_iou", "image_id"], ascending=[False, True]
        )
        bad = group[
            (group.worst_iou < INCORRECT_MAX_IOU) & ~group.image_id.isin(good.image_id.head(per_kind))
        ]
        # outlines that disagree first (both drew the class), then misses
        bad = bad.sort_values(["both_drew", "worst_iou", "image_id"], ascending=[False, True, True])
        for kind, chosen in (("correct", good.head(per_kind)), ("incorrect", bad.head(per_kind))):
            for number, r in enumerate(chosen.itertuples(), start=1):
                rows.append(
                    {
                        "class_id": int(class_id),
                        "kind": kind,
                        "file": example_file(taxonomy.by_id(int(class_id)).name, kind, number),
                        "image_id": r.image_id,
                        "iou": round(float(r.mean_iou if kind == "correct" else r.worst_iou), 3),
                        "annotators": ", ".join(r.worst_pair) if kind == "incorrect" else "",
                        "both_drew": bool(r.both_drew) if kind == "incorrect" else True,
                    }
                )
    return pd.DataFrame(
        rows, columns=["class_id", "kind", "file", "image_id", "iou", "annotators", "both_drew"]
    )


def example_file(class_name: str, kind: str, number: int) -> str:
    return f"examples/{class_name}-{kind}-{number}.png"


def render_examples(
    store: DatasetStore, examples: pd.DataFrame, annotations: pd.DataFrame, images: pd.DataFrame
) -> dict[str, bytes]:
    """The example crops as PNGs, by file name inside the revision folder: a correct example shows
    the pixel-wise majority outline, an incorrect one both annotators' outlines in two colours."""
    from dataset_pipeline.figures import overlay, png_bytes
    from dataset_pipeline.images import iter_images
    from dataset_pipeline.masks import decode_mask, mask_bbox

    out: dict[str, bytes] = {}
    if examples.empty:
        return out
    wanted = images[images.image_id.isin(set(examples.image_id))]
    pictures = dict(iter_images(store, wanted))
    for example in examples.itertuples():
        rgb = pictures.get(example.image_id)
        if rgb is None:
            continue
        rows = annotations[
            (annotations.image_id == example.image_id) & (annotations.class_id == example.class_id)
        ]
        per_annotator = {
            a: np.logical_or.reduce([decode_mask(r.rle, r.height, r.width) for r in mine.itertuples()])
            for a, mine in rows.groupby("annotator_id")
        }
        if example.kind == "correct":
            votes = np.sum([m.astype(np.int32) for m in per_annotator.values()], axis=0)
            masks = [votes * 2 > len(per_annotator)]
            colours = [CORRECT_COLOUR]
        else:
            pair = example.annotators.split(", ")
            empty = np.zeros(rgb.shape[:2], bool)
            masks = [per_annotator.get(a, empty) for a in pair]
            colours = list(PAIR_COLOURS)
        box = mask_bbox(np.logical_or.reduce(masks))
        if box is None:
            continue
        x0, y0, x1, y1 = box
        margin = max(12, (x1 - x0 + y1 - y0) // 8)
        x0, y0 = max(0, x0 - margin), max(0, y0 - margin)
        x1, y1 = min(rgb.shape[1], x1 + margin), min(rgb.shape[0], y1 + margin)
        drawn = overlay(rgb[y0:y1, x0:x1], [m[y0:y1, x0:x1] for m in masks], colours, alpha=0.2)
        out[example.file] = png_bytes(_fit(drawn, CROP_PX))
    return out


def _fit(rgb: np.ndarray, size: int) -> np.ndarray:
    """Scaled to ``size`` on its longer side, up as well as down: a thin gripper's crop is readable
    only enlarged (nearest neighbour, so the outlines stay one colour)."""
    import cv2

    scale = size / max(rgb.shape[:2])
    shape = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, shape, interpolation=cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA)


# -- the document -----------------------------------------------------------------------------


def _example_caption(example: Any) -> str:
    where = example.image_id.rsplit("/", 1)[-1]
    if example.kind == "correct":
        return f"correct: {where}, annotators agree at IoU {example.iou:.2f} (majority outline)"
    first, _, second = example.annotators.partition(", ")
    return f"incorrect: {where}, {first} (orange) and {second} (blue) disagree (IoU {example.iou:.2f})"


def render_markdown(
    rules: GuidelineRules, taxonomy: Taxonomy, revision: dict, examples: pd.DataFrame, files: dict[str, bytes]
) -> str:
    """The guideline as Markdown; pictures by their file names inside the revision folder."""
    lines = [
        f"# {rules.title}",
        "",
        f"**Revision {revision['revision']}**, effective from {revision['effective_from']} "
        f"(made {revision['created_at']}; taxonomy {taxonomy.tag}; rules digest {revision['digest']}).",
        "",
        "Changes in this revision: " + "; ".join(revision["changes"]) + ".",
        "",
        "## Rules for every class",
        "",
    ]
    lines += [f"- **{name.capitalize()}.** {rules.global_rules[name]}" for name in GLOBAL_RULES]
    lines += [f"- **{k.capitalize()}.** {v}" for k, v in rules.global_rules.items() if k not in GLOBAL_RULES]
    lines += ["", "## Classes", ""]
    for cls in taxonomy.foreground:
        rule = rules.classes[cls.name]
        lines += [
            f"### {cls.id}. {cls.name} ({cls.category})",
            "",
            f"*Definition.* {rule.definition}",
            "",
            f"*Boundary.* {rule.boundary}",
            "",
            f"*Minimum width.* {rule.min_width_px} px. *Agreement required:* mean pairwise IoU >= {cls.agreement_threshold:.2f}.",
            "",
        ]
        if rule.edge_cases:
            lines += ["*Edge cases.*", ""] + [f"- {case}" for case in rule.edge_cases] + [""]
        shown = [
            f"![{_example_caption(example)}]({example.file})  \n{_example_caption(example)}"
            for example in examples[examples.class_id == cls.id].itertuples()
            if example.file in files
        ]
        lines += (
            (["*Examples.*", ""] + [s + "\n" for s in shown])
            if shown
            else ["*Examples:* none yet (no gold images of this class).", ""]
        )
    return "\n".join(lines).rstrip() + "\n"


def render_html(markdown_text: str, files: dict[str, bytes]) -> str:
    """The same document as one HTML file with its pictures inside (data URIs): one file to mail or print."""
    body = []
    in_list = False
    for line in markdown_text.splitlines():
        if line.startswith("- "):
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(f"<li>{_inline(line[2:])}</li>")
            continue
        if in_list:
            body.append("</ul>")
            in_list = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("!["):
            caption, name = line[2:].split("](", 1)
            name = name.split(")", 1)[0]
            data = base64.b64encode(files[name]).decode()
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        elif line.strip() and not line.startswith(("correct:", "incorrect:")):
            body.append(f"<p>{_inline(line)}</p>")
    if in_list:
        body.append("</ul>")
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.45}"
        "figure{display:inline-block;margin:.5em;vertical-align:top;width:260px}"
        "figcaption{font-size:.85em;color:#444}img{max-width:240px}"
    )
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><style>{style}</style></head><body>\n'
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _inline(text: str) -> str:
    """Markdown's ** and * as HTML, after escaping."""
    import re

    escaped = html.escape(text.strip())
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"\*(.+?)\*", r"<em>\1</em>", escaped)


@dataclass
class GuidelineOutcome:
    revision: dict
    new: bool
    examples: pd.DataFrame
    files: dict[str, str]  # role -> store key
    revisions: list[dict]


def make_guideline(
    store: DatasetStore,
    rules: GuidelineRules,
    taxonomy: Taxonomy,
    annotations: pd.DataFrame,
    images: pd.DataFrame,
    now: datetime,
) -> GuidelineOutcome:
    """Register the revision of these rules, and write its document once (a revision made before
    any gold image existed gets its examples when the first ones come; a revision's text never changes)."""
    outcome = register_revision(store, rules, taxonomy, now)
    number = outcome.revision["revision"]
    keys = {
        "markdown": layout.guideline_file(number, layout.GUIDELINE_MARKDOWN_FILE),
        "html": layout.guideline_file(number, layout.GUIDELINE_HTML_FILE),
        "examples_table": layout.guideline_file(number, layout.GUIDELINE_EXAMPLES_FILE),
    }
    if store.exists(keys["examples_table"]):
        examples = store.read_parquet(keys["examples_table"])
        if len(examples) or not len(annotations):
            return GuidelineOutcome(outcome.revision, outcome.new, examples, keys, outcome.revisions)
    agreement = class_pair_agreement(annotations)
    examples = pick_examples(agreement, taxonomy)
    pictures = render_examples(store, examples, annotations, images) if len(examples) else {}
    examples = examples[examples.file.isin(pictures)].reset_index(drop=True)
    for name, data in pictures.items():
        store.write_bytes(layout.guideline_file(number, name), data)
    text = render_markdown(rules, taxonomy, outcome.revision, examples, pictures)
    store.write_bytes(keys["markdown"], text.encode())
    store.write_bytes(keys["html"], render_html(text, pictures).encode())
    store.write_parquet(keys["examples_table"], examples)  # last: its presence = the document is whole
    return GuidelineOutcome(outcome.revision, outcome.new, examples, keys, outcome.revisions)


def example_sheet_png(
    store: DatasetStore, revision: int, examples: pd.DataFrame, taxonomy: Taxonomy
) -> bytes | None:
    """All of a revision's example crops on one sheet (the materialization's picture), or None."""
    from dataset_pipeline.figures import contact_sheet, png_bytes
    from dataset_pipeline.images import decode_image

    tiles, captions = [], []
    for example in examples.itertuples():
        key = layout.guideline_file(revision, example.file)
        if store.exists(key):
            tiles.append(decode_image(store.read_bytes(key), store.url(key)).rgb)
            captions.append(
                f"{taxonomy.by_id(int(example.class_id)).name} {example.kind} IoU {example.iou:.2f}"
            )
    if not tiles:
        return None
    return png_bytes(contact_sheet(tiles, captions, columns=4, cell=240))
