from duoli.cli import main

main()
