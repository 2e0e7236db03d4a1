"""Benchmarks (`genpol bench NAME`): each writes results.json and plots into its OUT folder."""
