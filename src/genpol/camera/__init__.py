"""Camera frames without ROS: OpenCV capture with reconnect backoff (capture), and numpy images
to and from sensor_msgs/Image fields (image)."""
