"""One module per DAG's ``plan`` step, on the shared base (:mod:`.base`)."""
