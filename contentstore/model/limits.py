"""Sizes every layer shares."""

#: Bytes read or written at a time when streaming blobs, layers and HTTP bodies.
CHUNK_SIZE = 1 << 20

#: Manifests, indexes and image configs bigger than this are refused (as Docker and
#: containerd do).
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
