"""The answering core: records, text, retrieval, the reader, citation, the answering service and ingestion.

Nothing here imports `bot.slack`, `bot.training` or `bot.bench` (tests/test_layers.py checks it).
"""
