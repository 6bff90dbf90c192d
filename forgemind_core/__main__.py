"""``python -m forgemind_core`` runs the ``forge`` CLI."""

from .cli import main

main()
