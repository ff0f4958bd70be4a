"""DriftMonitor building blocks: schedule, traffic window, reference data, Evidently checks, reports,
champion/challenger evaluation and the promotion verdict. Cluster-free. `python -m flywheel.drift`
(job.py) is the monitor's check Job, which composes them; the operator imports none of this."""
