"""layerctl benchmarks; see benchmarks/README.md."""
