"""``python -m forgemind_core`` runs the ``forge`` CLI."""

from forgemind_core.cli.main import main

main()
