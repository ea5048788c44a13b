"""Semantic PNG class maps (palette, value = class id): the release exporter."""
