"""kipvs: make a Kubernetes node's IPVS table, service addresses and local routes match the cluster."""

__version__ = "0.1.0"
