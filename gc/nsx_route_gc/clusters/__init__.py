"""The clusters adapter: node inventories over the ``kubernetes`` client, kubeconfigs, Cluster
API discovery and the memory of clusters. May import the domain and the cross-cutting modules,
never a run.
"""
