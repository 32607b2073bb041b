"""Device identity for the broker: credentials (shown once, stored hashed), Mosquitto's password
and ACL files, and the ``anxin devices`` commands. See docs/security.md."""
