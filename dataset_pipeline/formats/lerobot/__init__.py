"""LeRobot v3.0: the release exporter."""
