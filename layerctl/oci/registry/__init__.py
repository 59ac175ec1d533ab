"""Images over the network: references, auth, the registry client, pull (with downloads,
prefetch) and push."""
