from torchslim.cli.main import main

main()
