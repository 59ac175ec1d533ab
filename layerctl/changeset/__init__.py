"""The layer tar format, both directions: the deterministic changeset writer and its
DiffID (tar, write), applying a layer or rootfs tar onto a tree (apply), and the kept
headers that give a loaded layer's tar back byte for byte (tarsplit)."""
