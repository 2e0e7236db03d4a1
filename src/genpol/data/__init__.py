"""Demonstration data: in-memory arrays, on-disk formats, statistics. No ROS, no torch."""
