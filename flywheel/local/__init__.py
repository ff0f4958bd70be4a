"""The embedded local backend: the same manifests on one machine, with no cluster.

store       desired and observed state in SQLite (<home>/state.db)
supervisor  local workload processes (process groups, pid files, logs, no orphans)
runners     one module per kind that drives a resource to its end state
commands    `flywheel run / get / logs`
"""
