"""Vocabularies (WordPiece, SentencePiece) and batching: examples in memory, length buckets, one batch order."""
