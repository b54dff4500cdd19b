"""nsx-route-gc: garbage-collects orphaned NSX static routes of Kubernetes routable pods."""

__version__ = "0.1.0"
