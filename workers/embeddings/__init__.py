"""The embedding worker: BERT-family encoders (our own forward), sentence-transformers pooling, a token-budget
continuous batcher and an OpenAI `/v1/embeddings` server. `python -m workers.embeddings --model <folder>`."""
