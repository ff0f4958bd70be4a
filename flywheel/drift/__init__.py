"""DriftMonitor building blocks: schedule, traffic window, reference data, Evidently checks, reports,
champion/challenger evaluation and the promotion verdict. Cluster-free: the operator and the local
runner (flywheel.drift.loop, flywheel.controllers.driftmonitor) compose them."""
