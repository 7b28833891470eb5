"""The local store: content-addressable blobs and resumable ingests, the OCI layout's
``index.json`` references, metadata in SQLite, reachability, gc and verify.

It never touches the network. It reads manifests through the plugins it is handed.
"""
