"""Long jobs that start and drive a graph: `genpol record --sim` (record), `genpol eval` (eval),
`genpol demo` (demo) and the executor benchmark's graph run (bench_executor).

They supervise node processes with genpol.launcher and talk to them through the client session
in genpol.nodes.session; none imports rclpy itself, and nothing in nodes/ imports them.
"""
