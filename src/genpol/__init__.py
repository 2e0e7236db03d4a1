"""genpol: generative imitation-learning policies for the SO-ARM101, as ROS 2 nodes."""

__version__ = "0.1.0"
