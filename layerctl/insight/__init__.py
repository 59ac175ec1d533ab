"""What an image's history tells: wasted space (waste, with dive's own figures in
divecompat and the CI gate in diveci), blame and bisect, the layer steps they walk
(history) and the package databases they read (packages, pkgdb, pkgversion)."""
