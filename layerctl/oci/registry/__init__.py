"""Images over the network: references, auth, transport (TLS, bounded answers, errors),
the registry client, pull (with downloads, prefetch) and push."""
