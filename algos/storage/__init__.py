"""Storage: the blob store (``file://`` or ``s3://``), versioned policy bundles and their
channels, the run store's mirrored training records, and promotion between channels.

Importable without torch or RLlib, so the dashboard and the store CLI stay light.
"""
