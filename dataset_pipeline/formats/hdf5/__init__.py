"""HDF5, one file per split: the release exporter and its pair reader."""
