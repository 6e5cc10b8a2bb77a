"""age encryption (age-encryption.org/v1) of the stored artifacts and of the
manifest's content section: keys, header and streamed payload, composed from
``cryptography``'s primitives (docs/ARCHITECTURE.md, "Encryption")."""

AGE_SUFFIX = ".age"  # appended to an encrypted artifact's object name
AGE_CONTENT_TYPE = "application/octet-stream"
SCHEME = "age"  # what the manifest records an encrypted artifact as
