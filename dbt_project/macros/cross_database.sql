{#
  The few places where DuckDB and BigQuery disagree, so the same models build on both targets.
  Marts under app/ and crm/ promise exact column types to the databases the syncs write to.
#}

{% macro dtype(name) %}
  {{- return(adapter.dispatch('dtype', 'activation')(name)) -}}
{% endmacro %}

{% macro default__dtype(name) %}
  {%- set types = {
      'string': 'varchar',
      'int': 'integer',
      'double': 'double',
      'bool': 'boolean',
      'date': 'date',
      'timestamp': 'timestamp',
      'timestamptz': 'timestamptz',
      'money': 'decimal(18, 2)',
      'fee': 'decimal(12, 2)',
  } -%}
  {{- return(types[name]) -}}
{% endmacro %}

{% macro bigquery__dtype(name) %}
  {%- set types = {
      'string': 'string',
      'int': 'int64',
      'double': 'float64',
      'bool': 'bool',
      'date': 'date',
      'timestamp': 'datetime',
      'timestamptz': 'timestamp',
      'money': 'numeric(18, 2)',
      'fee': 'numeric(12, 2)',
  } -%}
  {{- return(types[name]) -}}
{% endmacro %}

{# An instant (timestamptz) as a naive timestamp in UTC: app databases store wall-clock UTC. #}
{% macro utc_naive(expression) %}
  {{- return(adapter.dispatch('utc_naive', 'activation')(expression)) -}}
{% endmacro %}

{% macro default__utc_naive(expression) -%}
  cast(timezone('UTC', {{ expression }}) as timestamp)
{%- endmacro %}

{% macro bigquery__utc_naive(expression) -%}
  datetime({{ expression }}, 'UTC')
{%- endmacro %}
