"""What a catalog model serves (catalog_basemodel.kind) and what a worker's registry entry says it serves ("kind"):
the gateway routes chat/completions only to chat models and embeddings only to embedding models."""

MODEL_KIND_CHAT = "chat"
MODEL_KIND_EMBEDDING = "embedding"
MODEL_KINDS = (MODEL_KIND_CHAT, MODEL_KIND_EMBEDDING)
