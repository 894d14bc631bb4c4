"""Training from the feature store: splits, model directories, and one module per model."""
