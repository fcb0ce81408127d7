"""Python SDK of the activation platform's ingestion gateway.

    from datetime import UTC, datetime
    from activation_client import Client, make_event

    with Client("http://127.0.0.1:8000", api_key) as client:
        client.send(make_event("purchase_completed", datetime.now(UTC), customer_id="c1",
                               properties={"order_id": "o1", "order_value": "149.99",
                                           "currency": "EUR"}))

Events without an ``event_id`` get one in the client, once, before the first attempt;
retries resend it, so a lost response never turns into a second event.
"""

from activation_client.client import AsyncClient, Client
from activation_client.errors import (
    ClientError,
    InvalidEventError,
    RejectedError,
    RetriesExhaustedError,
)
from activation_client.events import check_event, make_event
from activation_client.retry import RetryPolicy

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "InvalidEventError",
    "RejectedError",
    "RetriesExhaustedError",
    "RetryPolicy",
    "check_event",
    "make_event",
]
