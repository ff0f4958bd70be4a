"""Model serving: the BentoML service of a Deployment (champion/challenger routing, adaptive
batching, request logging, metrics, hot swap). Entry point: flywheel.serving.service:FlywheelService.
"""
