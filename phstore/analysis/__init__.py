"""Analysis of stored features and trained models: descriptor-space maps (:mod:`.maps`), the
Ridge coefficient map (:mod:`.ridge_map`), inverse analysis with stable volumes
(:mod:`.inverse`) and bond-length/angle statistics (:mod:`.bonds`)."""
