"""Data: list files, split converters, video and frame-folder readers, sampling, transforms, SynthActions."""
