"""The version of ElliptIO, recorded in the provenance of every artifact it saves."""

__version__ = "0.1.0"
