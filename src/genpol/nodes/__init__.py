"""The only rclpy code in genpol: nodes that translate messages and call the core."""
