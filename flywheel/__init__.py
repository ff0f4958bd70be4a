"""Flywheel: a Kubernetes-native MLOps platform (and the same loop on one machine)."""

__version__ = "0.1.0"
