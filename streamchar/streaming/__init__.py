"""Streaming: chunk-by-chunk generation, writers and real-time accounting."""
