"""The Lorekeeper: what was recorded, read back — exports of data and model bundles.

- :mod:`.exports`: ``forge export-data`` and ``forge export``.
"""
