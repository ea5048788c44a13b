"""ALOHA/ACT-style episode HDF5: the release exporter."""
