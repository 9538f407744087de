"""Importing this package registers every entry (cheap: no framework is imported)."""

from zoo.entries import bert, dlrm, dummy, keras_models, language, resnet50, vision  # noqa: F401
