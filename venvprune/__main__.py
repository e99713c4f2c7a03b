from venvprune.cli import main

main()
