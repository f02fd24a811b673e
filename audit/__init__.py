"""The tamper-evident audit log: every workspace's events as the leaves of an RFC 6962 Merkle
tree, sealed off the ingest path, with signed tree heads and proofs anyone can check."""
