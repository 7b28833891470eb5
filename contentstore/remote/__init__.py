"""The remote side: HTTP transport with retries, authentication, credentials, the
endpoint fallback loop, the registry client, and the pull, push and login operations
that orchestrate them over the local store."""
