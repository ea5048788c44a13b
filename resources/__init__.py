"""Dagster ConfigurableResources: the thin layer that hands configured domain objects to assets."""

from resources.label_studio import LabelStudioResource
from resources.propagation import PropagationSettings
from resources.robot_environments import RobotEnvironments
from resources.sam2 import Sam2Resource
from resources.settings import (
    AgreementRules,
    AnnotationTeam,
    AnnotationToolsResource,
    BaselineSettings,
    CaptureRules,
    ComparisonRules,
    GuidelineResource,
    QcRules,
    QualityRules,
    ReleaseSettings,
    SplitRules,
    TaxonomyResource,
)
from resources.store import DatasetStoreResource, StoreIOManager

__all__ = [
    "AgreementRules",
    "AnnotationTeam",
    "AnnotationToolsResource",
    "BaselineSettings",
    "CaptureRules",
    "ComparisonRules",
    "DatasetStoreResource",
    "GuidelineResource",
    "LabelStudioResource",
    "PropagationSettings",
    "QcRules",
    "QualityRules",
    "ReleaseSettings",
    "RobotEnvironments",
    "Sam2Resource",
    "SplitRules",
    "StoreIOManager",
    "TaxonomyResource",
]
