"""API destinations in syncs.yml: settings checked by the type's own model at load, and what a sync
into an API object cannot do refused at load, saying why."""

from __future__ import annotations

import textwrap

import pytest

from activation.destinations import registry
from activation.syncs.spec import SyncConfigError, load_sync_config

CONFIG = """
destinations:
  app: {url_env: APP_URL}
  scoring:
    type: http
    rate_limit: {requests: 10, per_seconds: 1, max_concurrent: 2}
    settings:
      url: https://api.example.com/v1/{object}/batch
      bearer_token_env: SCORING_TOKEN
      body_template: {id: "{{ _key }}", attributes: {ltv: "{{ LTV }}", label: "LTV {{ LTV }}"}}
      fields:
        LTV: {type: number, precision: 12, scale: 2}
syncs:
  scores:
    source: crm_customer_scores
    destination: scoring
    table: accounts
    primary_key: external_id
    mode: mirror
    delete: {soft: Deleted__c}
    columns: {external_id: account_id, LTV: ltv}
"""


def load(tmp_path, text: str):
    path = tmp_path / "syncs.yml"
    path.write_text(textwrap.dedent(text))
    return load_sync_config(path)


def test_an_api_destination_loads_with_its_settings_checked(tmp_path):
    config = load(tmp_path, CONFIG)
    scoring = config.destinations["scoring"]
    assert (scoring.type, scoring.is_api, scoring.rate_limit.max_concurrent) == ("http", True, 2)
    settings = registry.settings(scoring)
    assert settings.fields["LTV"].precision == 12 and settings.batch_size == 100
    assert config.destinations["app"].type == "sql"
    assert registry.limiter("scoring", scoring) is registry.limiter("scoring", scoring)  # one per destination


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "      bearer_token_env: SCORING_TOKEN",
            "      bearer_token_env: scoring-token",
            r"destinations\.scoring\.settings\.bearer_token_env: .*not an environment variable name",
        ),
        (
            "      bearer_token_env: SCORING_TOKEN",
            "      api_version: 3",
            r"destinations\.scoring\.settings\.api_version: Extra inputs are not permitted",
        ),
        (
            "      url: https://api.example.com/v1/{object}/batch",
            "      url: ftp://x",
            r"destinations\.scoring\.settings\.url: .*not an http\(s\) URL",
        ),
        (
            "      url: https://api.example.com/v1/{object}/batch",
            "      url: https://u:pw@x.io/b",
            r"must not carry a password",
        ),
        (
            "      bearer_token_env: SCORING_TOKEN",
            "      headers: {Authorization: Bearer abc}",
            r"settings\.headers: .*give it in headers_env",
        ),
        (
            'label: "LTV {{ LTV }}"',
            'label: "{{ LTV | upper }}"',
            r"settings\.body_template: .*a placeholder is written \{\{ name \}\}",
        ),
        ('"{{ _key }}"', '"{{ _id }}"', r"settings\.body_template: .*unknown placeholder\(s\) \['_id'\]"),
        (
            "    rate_limit: {requests: 10, per_seconds: 1, max_concurrent: 2}\n",
            "",
            r"destinations\.scoring: .*needs rate_limit",
        ),
        (
            "    type: http\n",
            "    type: http\n    url_env: SCORING_URL\n",
            r"is reached through its settings, not url_env",
        ),
        (
            "    type: http\n",
            "    type: soap\n",
            r"destinations\.scoring\.type: Input should be 'sql', 'salesforce', 'hubspot', 'http', 'nats', "
            r"'rabbitmq_stream' or 'redis_stream'",
        ),
        (
            "  app: {url_env: APP_URL}",
            "  app: {default_url: 'sqlite:///x.db'}",
            r"destinations\.app: .*a sql destination needs url_env",
        ),
        (
            "  app: {url_env: APP_URL}",
            "  app: {url_env: APP_URL, settings: {a: 1}}",
            r"destinations\.app\.settings: .*settings are for API and stream destinations",
        ),
        (
            "    mode: mirror",
            "    mode: replace",
            r"syncs\.scores\.mode: replace is not possible into the http destination 'scoring': an API has no "
            "atomic swap",
        ),
        ("    mode: mirror", "    mode: truncate_insert", r"syncs\.scores\.mode: truncate_insert .*no atomic truncate"),
        (
            "    mode: mirror\n    delete: {soft: Deleted__c}",
            "    mode: insert",
            r"syncs\.scores\.mode: insert .*cannot promise insert-only; use upsert or mirror",
        ),
        (
            "    primary_key: external_id",
            "    primary_key: [external_id, LTV]",
            r"syncs\.scores\.primary_key: .*upserts by ONE field",
        ),
        (
            "    mode: mirror\n",
            "    mode: mirror\n    scope: {region: emea}\n",
            r"syncs\.scores\.scope: .*no such ownership",
        ),
        (
            "    mode: mirror\n",
            "    mode: mirror\n    foreign_keys: {LTV: other.id}\n",
            r"syncs\.scores\.foreign_keys: the http destination .scoring. cannot relate records",
        ),
        (
            "    mode: mirror\n    delete: {soft: Deleted__c}\n",
            "    mode: mirror\n    partition: {column: day}\n",
            r"syncs\.scores\.partition: .*needs a transaction",
        ),
    ],
)
def test_mistakes_are_named_at_load(tmp_path, old, new, message):
    assert old in CONFIG
    with pytest.raises(SyncConfigError, match=message):
        load(tmp_path, CONFIG.replace(old, new))


def test_the_registry_names_an_unknown_type():
    with pytest.raises(
        ValueError, match=r"'soap' is not an API destination type; known: \['http', 'hubspot', 'salesforce'\]"
    ):
        registry.vendor("soap")
