"""Closed-loop evaluation's pure side: metrics (outcomes, rates, mode fractions and entropy),
plots, rollout videos and the report. Nothing here imports rclpy; the job that runs an
evaluation through the graph (`genpol eval`) is genpol.jobs.eval.
"""
