"""``python -m geo_engine`` runs the ``geo-engine`` command.

Nothing else.
"""

from .cli import main

if __name__ == "__main__":
    main()
