"""Recording demonstrations: rosbag2 (MCAP) episode bags written and read without rclpy.

recorder.EpisodeRecorder is the recorder node's core; bag.list_episodes / bag.read_episode are
what the dataset builder reads; repair.repair_episode / repair.repair_paths make a bag a killed
recorder left torn whole again. The layout on disk is described in episode.py.
"""

from genpol.recording.bag import BagError, BagEpisode, TopicData, list_episodes, read_episode

__all__ = ["BagEpisode", "BagError", "TopicData", "list_episodes", "read_episode"]
