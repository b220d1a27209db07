"""Salesforce as an API destination: `Settings` is a destination's `settings:` block, `open_client`
binds an ObjectClient to one org (OAuth 2.0, sObject Collections and Bulk API 2.0)."""

from activation.destinations.salesforce.client import SalesforceClient, open_client
from activation.destinations.salesforce.settings import Settings

# Lookups (Contact.AccountId) are set by the parent's external ID: syncs may declare foreign_keys.
RELATIONSHIPS = True

__all__ = ["RELATIONSHIPS", "SalesforceClient", "Settings", "open_client"]
