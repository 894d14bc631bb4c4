"""Training from the feature store: the registry of model kinds, the estimator shape every model
has, one generic ``train``, one module per model, splits and predictions."""
