from renewal.operations.cli import main

main()
