"""The embedded local backend: the same manifests on one machine, with no cluster.

paths       the home (--home, $FLYWHEEL_HOME, ./.flywheel) and relative manifest paths against it
store       desired and observed state in SQLite (<home>/state.db)
supervisor  local workload processes (process groups, pid files, logs, no orphans)
lock        one `flywheel run` drives a resource at a time (flock under <home>/locks)
runners     one module per kind that drives a resource to its end state
commands    `flywheel run / get / logs`
lifecycle   `flywheel stop / delete`
logview     readable log lines, and a bounded follower for `flywheel logs -f`
"""
