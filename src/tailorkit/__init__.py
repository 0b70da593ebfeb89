"""tailorkit: warehouse-native personalization and experimentation.

The package follows the data path: ``collect`` → ``store`` → ``profile`` →
``segment`` → ``evaluate``/``decide`` → ``measure``, plus ``server`` (HTTP),
``cli`` (Typer) and ``demo`` (seeded shop generator).
"""

__version__ = "0.1.0"
