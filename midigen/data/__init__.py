"""Data: ingest a corpus, tokenize it into a store, split it, cut windows."""
