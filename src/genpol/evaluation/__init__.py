"""Closed-loop evaluation (`genpol eval`): policies run through the simulated ROS graph.

metrics (outcomes, rates, mode fractions and entropy), plots, video and report are pure Python
and never import rclpy; runner starts the graph and imports the rclpy side
(genpol.nodes.eval_probe) only when a run begins.
"""
