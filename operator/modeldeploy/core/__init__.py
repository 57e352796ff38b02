"""The pure core: every decision the operator makes, from plain data to plain data.

Nothing here talks to the API server or imports kubernetes or kopf (an import contract in
pyproject.toml keeps it so): naming, revision hashing, the desired children, the rollout state
machine, the plan, the traffic routers and the analysis judges are tested without a cluster.
"""
