from layerctl.cli.entry import main

main()
