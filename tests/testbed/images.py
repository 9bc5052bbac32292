"""Placeholder for the Prefect image builds (another change writes the real module).

build_images(cache_dir, log) -> [{"reference": name users write, "archive": docker-archive path, "private": bool}]
The test bed (testbed.py) pushes each into its public or its authenticated registry.
"""


def build_images(cache_dir, log):
    """No Prefect images yet: the test bed serves only its own pause and probe images."""
    del cache_dir, log
    return []
