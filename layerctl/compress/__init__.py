"""Layer compression: detecting and stream-decompressing gzip/zstd/xz/bz2 (detect,
gunzip) and the one deterministic gzip writer (gzip)."""
