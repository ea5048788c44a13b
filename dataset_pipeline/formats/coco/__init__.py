"""COCO instances: the importer (plain COCO and CVAT's "COCO 1.0") and the release exporter (RLE)."""
