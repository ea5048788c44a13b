"""The file formats and annotation tools, one folder each, behind one small interface each way.

As Datumaro keeps them: every folder holds what its format needs and nothing else.

=================  ==========================================================================
``cvat/``          CVAT: the mask codec, task files (XML 1.1, labels), the XML importer
``label_studio/``  Label Studio: brush RLE codec, labeling config and tasks, the importer, the API client
``coco/``          COCO instances: the importer (plain and CVAT's "COCO 1.0"), the RLE exporter
``yolo_seg/``      YOLO segmentation labels (ultralytics) - exporter
``semantic_png/``  palette PNG class maps - exporter
``hdf5/``          one HDF5 file per split - exporter (and its pair reader)
``lerobot/``       LeRobot v3.0: the exporter; a v2.1 / v3.0 source (reader); lerobot's own code (worker)
``episode_hdf5/``  ALOHA/ACT-style episode HDF5: the exporter; a source (reader); write-back (h5py)
``rlds/``          RLDS / TFDS: the exporter; a source (reader); tensorflow-datasets' own code (worker)
``write_back/``    the robot datasets a release's batches came from, with the class maps written in
=================  ==========================================================================

Robot datasets: ``robot_dataset.py`` (the source model, detection, sampling), ``robot_sources.py``
(the readers by kind), ``environments.py`` (the other environments lerobot and tensorflow-datasets
run in, and their workers in ``robot_workers/``).

Importers follow :class:`~dataset_pipeline.formats.importing.Importer` (``FORMATS``, ``detect``,
``read``); exporters :class:`~dataset_pipeline.formats.exporting.Exporter` (``NAME``, ``export``,
``validate``; with ``export_shared`` and ``export_image`` when they write a file per image). What
they share sits beside the folders: ``importing.py``, ``image_index.py``, ``reading.py`` (format
detection, zip archives), ``exporting.py`` (the release folder), ``release_content.py`` (what a
release holds), ``arrow.py``, ``trajectories.py``, ``archives.py``.

This module is the registry: it names the formats and imports a format's code only when asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dataset_pipeline.formats.exporting import Exporter
    from dataset_pipeline.formats.importing import Importer

#: The export formats the importers read, as ``--format`` names them.
IMPORT_FORMATS: tuple[str, ...] = ("cvat-xml", "cvat-coco", "coco", "label-studio")
#: The release formats, in the order they are written.
EXPORT_FORMATS: tuple[str, ...] = (
    "coco",
    "yolo_seg",
    "semantic_png",
    "hdf5",
    "lerobot",
    "episode_hdf5",
    "rlds",
    "write_back",
)


def importers() -> list[Importer]:
    """The tools' importers, in the order format detection asks them."""
    from dataset_pipeline.formats.coco import importer as coco
    from dataset_pipeline.formats.cvat import importer as cvat
    from dataset_pipeline.formats.label_studio import importer as label_studio

    found: list[Importer] = [cvat, label_studio, coco]
    return found


def exporters() -> dict[str, Exporter]:
    """Format name -> exporter, in the order they are written."""
    from dataset_pipeline.formats.coco import exporter as coco
    from dataset_pipeline.formats.episode_hdf5 import exporter as episode_hdf5
    from dataset_pipeline.formats.hdf5 import exporter as hdf5
    from dataset_pipeline.formats.lerobot import exporter as lerobot
    from dataset_pipeline.formats.rlds import exporter as rlds
    from dataset_pipeline.formats.semantic_png import exporter as semantic_png
    from dataset_pipeline.formats.write_back import exporter as write_back
    from dataset_pipeline.formats.yolo_seg import exporter as yolo_seg

    found: list[Exporter] = [coco, yolo_seg, semantic_png, hdf5, lerobot, episode_hdf5, rlds, write_back]
    return {exporter.NAME: exporter for exporter in found}
