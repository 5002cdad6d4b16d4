"""``python -m defstate`` runs the command line."""

from defstate.cli.main import main

if __name__ == "__main__":
    main()
