"""The model: digests, references, platforms, media types, descriptors and manifests.

Pure data and parsing. Nothing here opens a file or a socket, and nothing imports from
another layer of contentstore (only :mod:`contentstore.errors`).
"""
