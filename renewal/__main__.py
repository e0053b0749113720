from renewal.cli import main

main()
