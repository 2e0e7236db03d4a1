"""MuJoCo simulation of the SO-101: scene, arm, tasks with scripted experts, and a
joint_trajectory_controller stand-in. Never imports rclpy (nodes/sim_arm.py wraps it).

scene.py and arm.py choose the OpenGL backend (gl.py) before importing mujoco; trajectory.py is
numpy only and imports nothing heavy.
"""
