"""Building blocks of the machine-learning signal models: causal features and forward-return labels.

- :mod:`qf_plugins.signals.ml.features`: stationary features from past bars only, as a long
  (date x symbol) frame;
- :mod:`qf_plugins.signals.ml.labels`: labels from forward returns (3-class or continuous);
- :mod:`qf_plugins.signals.ml.metrics`: out-of-sample model metrics, calibration and importances.

The model itself is :class:`qf_plugins.signals.xgb.XGBoostSignal` (YAML ``type: xgboost``).
"""
