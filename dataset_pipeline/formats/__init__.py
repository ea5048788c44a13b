"""The annotation tools' own file formats: one module per tool (codecs, writers, readers)."""
