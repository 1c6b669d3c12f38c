"""ser_train, the offline side: `ser-train` and its tools (installed as `ser_train` from
the repository's train/)."""
