"""Python client and batch CLI of the RUQuant service."""

from ruquant_client.client import Client, ClientError, RetryPolicy

__all__ = ["Client", "ClientError", "RetryPolicy"]
