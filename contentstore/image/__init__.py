"""Operations on images already in the local store: layer decompression, unpacking to a
directory, and archives (OCI archive, docker-archive) in and out."""
