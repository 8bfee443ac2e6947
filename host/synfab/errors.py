"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class SynfabError(Exception):
    """Base of every error caused by user input (files, networks, configs, devices)."""
