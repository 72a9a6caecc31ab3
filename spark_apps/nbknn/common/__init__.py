"""What every application shares: storage, the session, errors, argument parsing, provenance."""
