"""Clients of a tailorkit server for Python apps.

>>> from tailorkit.client import Client
>>> Client.__name__
'Client'
"""

from tailorkit.client.http import Client

__all__ = ["Client"]
