"""Internal HTTP headers between the gateway and the workers (never sent by or to clients)."""

WORKER_SECRET_HEADER = "x-hearth-worker-secret"  # must equal HEARTH_WORKER_SECRET on the worker
ACCOUNT_ID_HEADER = "x-hearth-account-id"  # the calling account's id: the worker's prefix cache is keyed by it
