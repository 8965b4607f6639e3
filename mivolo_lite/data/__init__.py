"""Annotations, converters for the bundled research sets, and the training dataset."""

from .annotations import AnnotationRecord, read_annotations, write_annotations

__all__ = ["AnnotationRecord", "read_annotations", "write_annotations"]
