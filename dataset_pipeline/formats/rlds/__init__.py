"""RLDS / TFDS datasets (Open X-Embodiment, BridgeData, Octo): read, written back, exported."""
