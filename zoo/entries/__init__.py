"""Importing this package registers every entry (cheap: no framework is imported)."""
from zoo.entries import bert, dummy, resnet50  # noqa: F401
