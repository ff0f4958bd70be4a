"""`python -m flywheel.drift`: the DriftMonitor's check Job (see flywheel/drift/job.py)."""

import sys

from flywheel.drift import job

if __name__ == "__main__":
    sys.exit(job.main())
