"""The model name the gateway sends a worker: the base model's slug, or `base:adapter_uid` for an adapter."""

ADAPTER_SEPARATOR = ":"


def worker_model_name(base: str, adapter_uid: str | None = None) -> str:
    return base if adapter_uid is None else f"{base}{ADAPTER_SEPARATOR}{adapter_uid}"


def parse_worker_model_name(name: str) -> tuple[str, str | None]:
    """(base, adapter_uid), adapter_uid None for a base model name. ValueError when either part is empty."""
    base, sep, adapter_uid = name.partition(ADAPTER_SEPARATOR)
    if not base or (sep and not adapter_uid):
        raise ValueError(f"not a worker model name: {name!r}")
    return base, (adapter_uid if sep else None)
