"""mha-course: multi-head attention and head specialization, from scratch."""

__version__ = "0.1.0"
