"""Salesforce as an API destination: `Settings` is a destination's `settings:` block, `open_client`
binds an ObjectClient to one org (OAuth 2.0, sObject Collections and Bulk API 2.0)."""

from activation.destinations.salesforce.client import SalesforceClient, open_client
from activation.destinations.salesforce.settings import Settings

__all__ = ["SalesforceClient", "Settings", "open_client"]
