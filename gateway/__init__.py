"""Hearth's public OpenAI-compatible API: auth, rate limits, routing to workers, metering. Never imports Django."""
