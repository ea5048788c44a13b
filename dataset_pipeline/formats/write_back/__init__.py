"""Robot datasets written back: an augmented copy of each source dataset, in its own format."""
