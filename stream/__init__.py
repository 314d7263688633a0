"""Streaming runtime: sources, capture threads, ring buffer, recognizer loop, overlays, sinks."""
