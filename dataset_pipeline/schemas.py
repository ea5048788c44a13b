"""The tables of the pipeline: the one home of every table's columns and dtypes.

Each table is a :class:`TableSchema`: its columns in order, and the dtype each column is cast
to when the table is built (columns without one keep the type of their values: text stays
``object``, nullable text holds None). A stage builds its table with :meth:`TableSchema.frame`
(from rows) or :meth:`TableSchema.from_columns` (from whole columns), so an empty table has
the same columns and types as a full one, and a reader can rely on them.

Masks are three columns everywhere (DESIGN.md): ``height``, ``width`` and ``rle``, the COCO
compressed counts string. pandas is imported only when a table is built: the release's
export path reads Parquet as Arrow and never loads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class TableSchema:
    """A table's columns, in order, and the dtypes they are cast to.

    >>> table = TableSchema("pairs", ("name", "count"), {"count": "int64"})
    >>> frame = table.frame([{"name": "a", "count": 1}])
    >>> list(frame.columns), str(frame["count"].dtype), len(table.frame())
    (['name', 'count'], 'int64', 0)
    """

    name: str
    columns: tuple[str, ...]
    dtypes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.dtypes) - set(self.columns)
        if unknown:
            raise ValueError(f"table {self.name}: dtypes for columns it does not have: {sorted(unknown)}")

    def frame(self, rows: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
        """The table of ``rows`` (dicts by column name; missing keys are empty), typed."""
        import pandas as pd

        return self.cast(pd.DataFrame(list(rows), columns=list(self.columns)))

    def from_columns(self, columns: Mapping[str, Any]) -> pd.DataFrame:
        """The table of whole columns (arrays, lists or scalars broadcast), in schema order, typed."""
        import pandas as pd

        missing = [c for c in self.columns if c not in columns]
        if missing:
            raise ValueError(f"table {self.name}: columns {missing} are missing")
        return self.cast(pd.DataFrame({c: columns[c] for c in self.columns}))

    def cast(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.astype(dict(self.dtypes)) if self.dtypes else frame


# -- what arrives from outside ----------------------------------------------------------------

#: The columns an upload's ``manifest.csv`` must have (DESIGN.md's captures, as the robot knows them).
MANIFEST_REQUIRED: tuple[str, ...] = (
    "image_file",
    "capture_ts",
    "camera_model",
    "scene_id",
    "lighting",
    "episode_id",
    "frame_index",
)
MANIFEST_OPTIONAL: tuple[str, ...] = (
    "image_id",
    "depth_file",
    "post_processing",
    # a robot dataset's frame: the source's own episode index and the seconds into the episode
    "episode_index",
    "timestamp",
)
#: ``prompts.csv``: a detector's boxes and/or points per image, with the class it saw.
PROMPT_BOX_COLUMNS: tuple[str, ...] = ("x0", "y0", "x1", "y1")
PROMPT_POINT_COLUMNS: tuple[str, ...] = ("point_x", "point_y")
#: ``reviews/<batch>/peer_review.csv``: a peer's verdict on an annotator's work on an image.
PEER_REVIEW = TableSchema(
    "peer_review", ("image_file", "annotator_id", "reviewer_id", "accepted", "reviewed_at")
)
PEER_REVIEW_REQUIRED: tuple[str, ...] = PEER_REVIEW.columns[:4]
#: ``reviews/<batch>/expert_audit.csv``: an expert's verdict on a sampled image, the same columns.
EXPERT_AUDIT = TableSchema("expert_audit", PEER_REVIEW.columns)

# -- per-batch tables -------------------------------------------------------------------------

CAPTURES = TableSchema(
    "captures",
    (
        "image_id",
        "uri",
        "sha256",
        "width",
        "height",
        "capture_ts",
        "camera_model",
        "scene_id",
        "lighting",
        "episode_id",
        "frame_index",
        "depth_uri",
        "batch",
        "post_processing",
        "source_episode",
        "timestamp_s",
    ),
    {
        "width": "int64",
        "height": "int64",
        "frame_index": "int64",
        "capture_ts": "datetime64[us, UTC]",
        "source_episode": "Int64",
        "timestamp_s": "float64",
    },
)
QUARANTINE = TableSchema(
    "quarantine", ("batch", "manifest_row", "image_file", "image_id", "reason"), {"manifest_row": "int64"}
)
PREMASKS = TableSchema(
    "premasks",
    (
        "premask_id",
        "image_id",
        "class_id",
        "height",
        "width",
        "rle",
        "score",
        "prompt_type",
        "backend",
        "model_version",
        "seconds",
        "rejected",
        "prompt_source",  # prompts.csv / detector / auto
        "detector",  # the detector's model_version for a detector-prompted mask, else empty
        "detector_score",
    ),
    {
        "class_id": "Int64",
        "height": "int64",
        "width": "int64",
        "score": "float64",
        "rejected": "bool",
        "detector_score": "float64",
    },
)
#: One row per mask a person (or a tool on their behalf) made; ``created_at`` is a UTC time,
#: parsed by the importers (which name the record of a time they cannot read).
ANNOTATIONS = TableSchema(
    "annotations",
    (
        "annotation_id",
        "image_id",
        "annotator_id",
        "class_id",
        "height",
        "width",
        "rle",
        "z_order",
        "created_at",
        "seconds_spent",
        "tool",
        "tool_version",
        "assistance",
        "premask_id",
        "premask_iou",
        "review_status",
        "review_accepted",
        "audit_accepted",
        "is_gold",
        "source_file",
        "guideline_revision",
    ),
    {
        "class_id": "int64",
        "height": "int64",
        "width": "int64",
        "z_order": "int64",
        "seconds_spent": "float64",
        "premask_iou": "float64",
        "review_accepted": "boolean",
        "audit_accepted": "boolean",
        "is_gold": "bool",
        "guideline_revision": "Int64",
    },
)
REVIEW_STATUSES: tuple[str, ...] = ("unreviewed", "peer_reviewed", "expert_approved")
#: ``propagated``: a mask carried from a keyframe that a person accepted as it was;
#: ``propagated-corrected``: one a person changed (episode_propagation).
PROPAGATED_ASSISTANCE: tuple[str, ...] = ("propagated", "propagated-corrected")
ASSISTANCE_KINDS: tuple[str, ...] = ("manual", "sam2-assisted", "auto", *PROPAGATED_ASSISTANCE)
#: The demo's exact visible instances (``ground_truth/<batch>/instances.parquet``).
GROUND_TRUTH = TableSchema(
    "ground_truth",
    (
        "image_id",
        "image_file",
        "instance_id",
        "class_id",
        "class_name",
        "z_order",
        "height",
        "width",
        "rle",
        "area",
    ),
)
#: Every frame of a batch's episodes: whether people label it by hand first, and why.
KEYFRAMES = TableSchema(
    "keyframes",
    ("image_id", "episode_id", "frame_index", "position", "keyframe", "reason", "motion_px"),
    {"frame_index": "int64", "position": "int64", "keyframe": "bool", "motion_px": "float64"},
)
#: Masks carried from reviewed keyframes to the frames between (one row per instance and frame);
#: ``premask_id`` is the id a correction links to, as a pre-mask's; ``score`` the confidence.
PROPAGATED = TableSchema(
    "propagated",
    (
        "premask_id",
        "image_id",
        "episode_id",
        "frame_index",
        "track_id",
        "class_id",
        "z_order",
        "height",
        "width",
        "rle",
        "score",
        "backend",
        "model_version",
        "source_keyframes",
        "distance",
    ),
    {
        "frame_index": "int64",
        "track_id": "int64",
        "class_id": "int64",
        "z_order": "int64",
        "height": "int64",
        "width": "int64",
        "score": "float64",
        "distance": "int64",
    },
)
#: Per episode and class: the flow-warped IoU of consecutive class maps, and flickers.
TEMPORAL_CONSISTENCY = TableSchema(
    "temporal_consistency",
    (
        "batch",
        "episode_id",
        "class_id",
        "class_name",
        "category",
        "transitions",
        "mean_warped_iou",
        "min_warped_iou",
        "worst_image_id",
        "worst_previous_image_id",
        "threshold",
        "flickers",
        "passed",
    ),
    {
        "class_id": "int64",
        "transitions": "int64",
        "mean_warped_iou": "float64",
        "min_warped_iou": "float64",
        "threshold": "float64",
        "flickers": "int64",
        "passed": "bool",
    },
)
#: A live Label Studio's task id of each pushed image.
LABEL_STUDIO_TASKS = TableSchema("label_studio_tasks", ("image_id", "task_id", "project_id"))

# -- corpus-wide tables -----------------------------------------------------------------------

QUALITY_ISSUES = TableSchema("quality_issues", ("check", "image_id", "annotation_id", "detail"))
REFINEMENT = TableSchema("refinement", ("annotator_id", "assisted", "refined", "refinement_rate", "flagged"))
AGREEMENT_PER_IMAGE = TableSchema(
    "agreement_per_image", ("image_id", "annotators", "mean_pairwise_iou", "disagreement")
)
AGREEMENT_PER_BATCH = TableSchema(
    "agreement_per_batch", ("batch", "annotator_id", "iou_vs_consensus", "comparisons")
)
BATCH_VELOCITY = TableSchema("batch_velocity", ("batch", "annotator_id", "images_per_hour"))
#: Per class and guideline revision: agreement of the pairs who both labelled under that revision.
AGREEMENT_PER_REVISION = TableSchema(
    "agreement_per_revision",
    ("class_id", "class", "guideline_revision", "mean_pairwise_iou", "pairs", "images"),
    {"class_id": "int64", "guideline_revision": "Int64", "pairs": "int64", "images": "int64"},
)
#: Per annotator and batch (or calibration round) in time order: IoU against the consensus, and the
#: change since their first.
ANNOTATOR_DRIFT = TableSchema(
    "annotator_drift",
    ("annotator_id", "batch", "calibration", "first_created_at", "iou_vs_consensus", "drift", "comparisons"),
    {"calibration": "bool", "iou_vs_consensus": "float64", "drift": "float64", "comparisons": "int64"},
)
#: Per batch: agreement of its gold images (all classes, all pairs); a calibration round's own row.
AGREEMENT_PER_BATCH_GOLD = TableSchema(
    "agreement_per_batch_gold",
    ("batch", "calibration", "first_created_at", "gold_images", "mean_pairwise_iou", "pairs"),
    {"calibration": "bool", "gold_images": "int64", "mean_pairwise_iou": "float64", "pairs": "int64"},
)
#: Per pair of annotators: their agreement on the gold images they both labelled, and in how many batches.
AGREEMENT_PER_PAIR = TableSchema(
    "agreement_per_pair",
    ("annotator_a", "annotator_b", "mean_pairwise_iou", "comparisons", "batches"),
    {"mean_pairwise_iou": "float64", "comparisons": "int64", "batches": "int64"},
)
#: A batch's agreement evidence (``tables/agreement/batches/<batch>/<name>.parquet``): sums and
#: counts that add up across batches (an image is in one batch), so the corpus's report is these
#: summed and never the corpus's masks held at once. ``guideline_revision`` is the revision both
#: annotators of a pair worked under, empty when they differ or it is unknown.
AGREEMENT_EVIDENCE: dict[str, TableSchema] = {
    table.name: table
    for table in (
        TableSchema(
            "pairs",
            ("batch", "class_id", "annotator_a", "annotator_b", "guideline_revision", "iou_sum", "pairs"),
            {"class_id": "int64", "guideline_revision": "Int64", "iou_sum": "float64", "pairs": "int64"},
        ),
        TableSchema(
            "boundary",
            ("class_id", "iou_sum", "pairs"),
            {"class_id": "int64", "iou_sum": "float64", "pairs": "int64"},
        ),
        TableSchema(
            "classes",
            ("class_id", "instances", "images"),
            {"class_id": "int64", "instances": "int64", "images": "int64"},
        ),
        TableSchema(
            "revisions",
            ("class_id", "guideline_revision", "images"),
            {"class_id": "int64", "guideline_revision": "Int64", "images": "int64"},
        ),
        TableSchema(
            "consensus",
            ("batch", "annotator_id", "class_id", "iou_sum", "comparisons"),
            {"class_id": "int64", "iou_sum": "float64", "comparisons": "int64"},
        ),
        TableSchema(
            "annotators",
            (
                "batch",
                "annotator_id",
                "images",
                "masks",
                "timed_seconds",
                "timed_images",
                "timed_masks",
                "linked",
                "refined",
                "unrefined",
                "reviewed",
                "accepted",
            ),
            {
                "images": "int64",
                "masks": "int64",
                "timed_seconds": "float64",
                "timed_images": "int64",
                "timed_masks": "int64",
                "linked": "int64",
                "refined": "int64",
                "unrefined": "int64",
                "reviewed": "int64",
                "accepted": "int64",
            },
        ),
        TableSchema("batches", ("batch", "first_created_at")),
        TableSchema(
            "images",
            ("batch", "image_id", "annotators", "mean_pairwise_iou", "disagreement"),
            {"annotators": "int64", "mean_pairwise_iou": "float64", "disagreement": "float64"},
        ),
    )
}
#: A batch's quality-control samples and where their verdicts stand.
QC_TIERS: tuple[str, ...] = ("peer_review", "expert_audit")
#: ``tasks/<batch>/team/work_plan.csv``: who labels which image. ``role``: gold (the batch's pair,
#: each on their own), single (one person) or calibration (everyone, the same images).
WORK_PLAN = TableSchema("work_plan", ("image_id", "image_file", "annotator_id", "role"))
QC_ASSIGNMENTS = TableSchema(
    "qc_assignments",
    (
        "image_id",
        "image_file",
        "tier",
        "annotator_id",
        "reviewer_id",
        "stratum",
        "week",
        "assigned_at",
        "status",  # pending / accepted / rejected
    ),
    {"assigned_at": "datetime64[us, UTC]"},
)
SPLITS = TableSchema("splits", ("image_id", "split", "group", "dhash"))
#: ``releases/<version>/index.parquet``: each exported file, the unit (image id, ``episode:<id>``,
#: ``shard:<split>/<name>``) and format it holds, the digest of its inputs, its size, and
#: ``source``: the earlier release's file whose bytes it shares (a hard link or a server-side
#: copy; "" when written), ``reused`` = it has one.
RELEASE_INDEX = TableSchema(
    "release_index",
    ("unit", "format", "digest", "file", "bytes", "reused", "source"),
    {"bytes": "int64", "reused": "bool"},
)
#: ``tables/splits/released.parquet``: each released image's split, and the version that first held it.
RELEASED_SPLITS = TableSchema("released_splits", ("image_id", "split", "version"))
ACTIVE_LEARNING_QUEUE = TableSchema(
    "active_learning_queue", ("image_id", "mean_entropy", "mc_disagreement", "score", "rank", "batch", "uri")
)

# -- release provenance -----------------------------------------------------------------------

IMAGE_PROVENANCE = TableSchema(
    "image_provenance",
    (
        "image_id",
        "split",
        "file",
        "capture_ts",
        "camera_model",
        "scene_id",
        "episode_id",
        "frame_index",
        "lighting",
        "post_processing",
        "width",
        "height",
        "sha256",
        "batch",
    ),
)
ANNOTATION_PROVENANCE = TableSchema(
    "annotation_provenance",
    (
        "annotation_id",
        "image_id",
        "split",
        "class_id",
        "class_name",
        "area_px",
        "annotator_id",
        "created_at",
        "seconds_spent",
        "tool",
        "tool_version",
        "assistance",
        "premask_id",
        "premask_iou",
        "review_status",
        "audit_accepted",
        "is_gold",
        "source_file",
        "guideline_revision",
    ),
)
