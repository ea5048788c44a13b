"""Project-wide rules that assets and their gating checks read alike."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from dataset_pipeline.formats import EXPORT_FORMATS
from dataset_pipeline.images import DEFAULT_MAX_PIXELS
from dataset_pipeline.raw_captures import DEFAULT_LIGHTING


class CaptureRules(ConfigurableResource):
    """What an upload batch must satisfy to be pre-masked."""

    allowed_lighting: list[str] = Field(default=list(DEFAULT_LIGHTING))
    min_side_px: int = Field(default=64, description="Smallest accepted image width/height")
    max_side_px: int = Field(default=8192, description="Largest accepted image width/height")
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS, description="Images above this are quarantined unread"
    )
    max_quarantine_share: float = Field(
        default=0.05, description="Blocking check: share of a batch's images that may be quarantined"
    )
    min_quarantined_to_block: int = Field(
        default=3,
        description="The share blocks a batch only from this many quarantined images on (small batches)",
    )


class TaxonomyResource(ConfigurableResource):
    """The class taxonomy in force: the packaged tabletop one unless ``path`` names a YAML file."""

    path: str | None = Field(default=None, description="Taxonomy YAML; unset = the packaged default")

    def load(self):  # -> dataset_pipeline.taxonomy.Taxonomy
        from dataset_pipeline.taxonomy import load_taxonomy

        return load_taxonomy(self.path)


class AnnotationToolsResource(ConfigurableResource):
    """How annotation tasks point at images.

    ``image_url_mode``: ``local-files`` (Label Studio's local file serving; the store must be a
    folder under ``local_files_document_root``), ``store`` (the store URL as is, e.g. s3://...
    for a Label Studio project with S3 storage connected), or ``base-url`` (``image_base_url`` +
    the store key, for any web server in front of the store). Unset: what the store can serve,
    ``local-files`` for a folder, ``store`` for S3.
    """

    image_url_mode: str | None = Field(
        default=None,
        description="local-files, store or base-url; unset = local-files for a folder store, store for S3",
    )

    def url_mode(self, store) -> str:  # store: dataset_pipeline.store.DatasetStore
        from dataset_pipeline.annotation_tasks import default_image_url_mode

        return self.image_url_mode or default_image_url_mode(s3=not store.is_local)

    def image_url(self, store):  # -> Callable[[store key], URL]; ValueError when misconfigured
        """How the task files of this store point at an image (one builder for every round of tasks)."""
        from dataset_pipeline.annotation_tasks import image_url_builder

        return image_url_builder(
            store, self.url_mode(store), self.local_files_document_root, self.image_base_url
        )

    local_files_document_root: str | None = Field(
        default=None, description="LOCAL_FILES_DOCUMENT_ROOT of Label Studio; unset = the store root"
    )
    image_base_url: str | None = None
    cvat_image_names: str = Field(
        default="relative", description="relative (path inside the batch folder) or basename"
    )
    label_map: dict[str, str] = Field(
        default_factory=dict, description="Aliases: the tools' label names -> taxonomy class names"
    )
    default_annotator: str = Field(
        default="unknown", description="Annotator of exports that name none (COCO, CVAT without assignee)"
    )


class QualityRules(ConfigurableResource):
    """Thresholds of the corpus quality checks."""

    min_area_px: int = Field(default=20, description="Smallest mask area")
    overlap_tolerance: float = Field(
        default=0.05, description="Same-z overlap allowed, as a share of the smaller instance"
    )


class AgreementRules(ConfigurableResource):
    """How agreement is measured and judged."""

    boundary_px_at_640x480: float = Field(
        default=2.0, description="Boundary IoU band, scaled with the image diagonal"
    )
    min_instances: int = Field(
        default=20, description="Gold instances a class needs before its threshold is enforced"
    )
    threshold_overrides: dict[str, float] = Field(
        default_factory=dict,
        description="Per-class agreement thresholds (class name -> IoU), over the taxonomy's",
    )
    boundary: bool = Field(default=True, description="Compute Boundary IoU (dense bands: the costly part)")
    calibration_prefix: str = Field(
        default="calibration",
        description="Batches whose name starts so are calibration rounds (the same images, every annotator)",
    )

    def settings(self):  # -> dataset_pipeline.agreement_report.AgreementSettings
        from dataset_pipeline.agreement_report import AgreementSettings

        return AgreementSettings(
            boundary_px_at_640x480=self.boundary_px_at_640x480,
            min_instances=self.min_instances,
            thresholds=dict(self.threshold_overrides),
            boundary=self.boundary,
            calibration_prefix=self.calibration_prefix,
        )


class GuidelineResource(ConfigurableResource):
    """The annotation guideline's rules file (per class: definition, boundary rule, minimum width,
    edge cases; global rules); unset = the packaged rules of the packaged taxonomy."""

    rules_path: str | None = Field(
        default=None, description="Guideline rules YAML; unset = the packaged tabletop rules"
    )

    def load(self, taxonomy):  # -> dataset_pipeline.annotation_guideline.GuidelineRules
        from dataset_pipeline.annotation_guideline import load_rules

        return load_rules(self.rules_path, taxonomy)


class AnnotationTeam(ConfigurableResource):
    """Who labels: the roster (in rotation order) and the share of each batch their pair labels twice."""

    annotators: list[str] = Field(
        default_factory=list,
        description="The annotators' ids as the tools write them (emails); empty: no work plan is made",
    )
    gold_share: float = Field(
        default=0.2, description="Share of a batch's images labelled independently by the batch's pair"
    )

    def settings(self, calibration_prefix: str):  # -> dataset_pipeline.annotation_tasks.TeamSettings
        from dataset_pipeline.annotation_tasks import TeamSettings

        return TeamSettings(
            annotators=tuple(self.annotators),
            gold_share=self.gold_share,
            calibration_prefix=calibration_prefix,
        )


class QcRules(ConfigurableResource):
    """Quality control's sampling tiers and batch flags."""

    peer_share: float = Field(
        default=0.12, description="Share of a batch's single-annotator images peer-reviewed"
    )
    audit_share: float = Field(
        default=0.05, description="Share of each week's labelled images an expert audits"
    )
    auditors: list[str] = Field(
        default_factory=list, description="The experts who audit, in turn (empty: any)"
    )
    min_acceptance: float = Field(
        default=0.80, description="A batch under this first-pass acceptance is flagged"
    )
    max_time_ratio: float = Field(
        default=2.0, description="A batch over this many times the team's median time per image is flagged"
    )

    def settings(self):  # -> dataset_pipeline.qc_assignments.QcSettings
        from dataset_pipeline.qc_assignments import QcSettings

        return QcSettings(
            peer_share=self.peer_share,
            audit_share=self.audit_share,
            auditors=tuple(self.auditors),
            min_acceptance=self.min_acceptance,
            max_time_ratio=self.max_time_ratio,
        )


class SplitRules(ConfigurableResource):
    """How the corpus is split."""

    train_share: float = 0.70
    val_share: float = 0.15
    test_share: float = 0.15
    seed: int = 0
    held_out_scenes: list[str] = Field(default_factory=list, description="scene_ids kept entirely for test")
    hash_distance: int = Field(
        default=4, description="dHash bits within which two images are near-duplicates"
    )
    share_tolerance: float = Field(
        default=0.05, description="Blocking check: allowed distance from the target share"
    )

    def shares(self) -> dict[str, float]:
        return {"train": self.train_share, "val": self.val_share, "test": self.test_share}


class BaselineSettings(ConfigurableResource):
    """The baseline model and its training (segmentation-models-pytorch)."""

    architecture: str = "DeepLabV3Plus"
    encoder: str = "mobilenet_v2"
    encoder_weights_path: str | None = Field(
        default=None, description="Local encoder state dict; unset = random init"
    )
    image_size: int = Field(
        default=128, description="Training and evaluation size (square); 128 keeps the CPU demo short"
    )
    epochs: int = 20
    batch_size: int = 8
    learning_rate: float = 3e-3
    seed: int = 0
    device: str = Field(default="auto", description="auto (CUDA when present), cuda, cpu")
    bf16: bool = True
    min_miou: float = Field(
        default=0.70, description="Non-blocking check: the mIoU the baseline should reach"
    )

    def train_config(self):  # -> dataset_pipeline.baseline_model.TrainConfig
        from dataset_pipeline.baseline_model import TrainConfig

        return TrainConfig(**{k: getattr(self, k) for k in TrainConfig.__dataclass_fields__})


class ComparisonRules(ConfigurableResource):
    """The bar the labels must clear over zero-shot, and how the active-learning pool is scored."""

    min_annotation_value_points: float = Field(
        default=15.0, description="15 for manipulation, 20 for outdoor navigation"
    )
    mc_dropout_passes: int = Field(
        default=0, description="> 1 adds MC-dropout disagreement to the entropy score"
    )
    pool: str = Field(default="unreviewed", description="unreviewed (captured, no reviews yet) or all")


class ReleaseSettings(ConfigurableResource):
    """What a release holds and what its card says about terms and cost."""

    formats: list[str] = Field(
        default=list(EXPORT_FORMATS),
        description=f"Export formats: {', '.join(EXPORT_FORMATS)}",
    )
    name: str = Field(default="", description="Dataset name on the card; empty = the taxonomy's name")
    description: str = "Robot camera captures with reviewed semantic segmentation masks."
    purpose: str = "Semantic segmentation for robot manipulation: what to grasp, where, and what to avoid."
    contributor: str = ""
    url: str = ""
    license: str = Field(default="CC-BY-4.0", description="Licence of images and labels")
    license_url: str = "https://creativecommons.org/licenses/by/4.0/"
    model_training_grant: str = Field(
        default="not stated",
        description="Explicit grant to train models on the data, e.g. 'granted, commercial use included'",
    )
    hourly_rate: float = Field(
        default=0.0, description="Annotation labour rate per hour, for the card's cost"
    )
    currency: str = "USD"
    preview_samples: int = Field(default=6, description="Random samples drawn as overlays in the UI")
    export_threads: int = Field(
        default=0, description="Threads writing the per-image files (images, YOLO, PNG); 0 = one per core"
    )
    check_shared_files: bool = Field(
        default=False,
        description="The reload checks read back every file, also those shared with an earlier complete "
        "release (read back by its checks; linked, read-only); off = an incremental release's checks read "
        "what it made",
    )

    def load_release(self, store, taxonomy):  # -> (ReleaseContent, version)
        """The release the store's corpus, splits and reports make now, under these settings."""
        from dataset_pipeline.dataset_release import load_release

        return load_release(store, taxonomy, list(self.formats), self.info(taxonomy.name))

    def info(self, taxonomy_name: str) -> dict:
        """The release info block (COCO ``info``, the card's header); part of the version digest."""
        return {
            "name": self.name or taxonomy_name,
            "description": self.description,
            "purpose": self.purpose,
            "contributor": self.contributor,
            "url": self.url,
            "license": self.license,
            "license_url": self.license_url,
            "model_training_grant": self.model_training_grant,
        }
