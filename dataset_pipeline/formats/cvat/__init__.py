"""CVAT: its mask encoding (codec), the task files annotation_tasks writes (tasks), the XML importer."""
