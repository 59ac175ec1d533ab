from layerctl.cli.main import main

main()
