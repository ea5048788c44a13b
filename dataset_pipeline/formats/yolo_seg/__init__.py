"""YOLO segmentation (ultralytics): the release exporter."""
