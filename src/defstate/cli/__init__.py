"""The ``defstate`` command line: thin wrappers over the library, rendered with rich."""
