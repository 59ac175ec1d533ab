"""Images as files: docker-archive and OCI layout, read (fs, load) and written (out,
blobs, save, export)."""
