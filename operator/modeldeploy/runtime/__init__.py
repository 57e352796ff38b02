"""The runtime: the only package that talks to the API server, runs kopf or keeps a clock.

It observes the cluster, asks the pure core (modeldeploy.core) what to do, and does it: the
Kubernetes client (kube), the metrics providers' I/O, reconcile, the resync scheduler, kopf glue
and the operator process.
"""
