-- Recruiter activities with candidates, by day: the app shows each candidate's timeline.
-- Partitioned by `event_date` (UTC). Dagster passes the partition window as vars
-- (min_date inclusive, max_date exclusive); each run replaces exactly the days in that window,
-- so re-running a day is idempotent. Without vars (a plain `dbt build`) every day is rebuilt.
-- BigQuery has no `append` strategy: `merge` without a unique_key inserts the same way.
{{
    config(
        materialized='incremental',
        incremental_strategy=('merge' if target.type == 'bigquery' else 'append'),
        on_schema_change='fail',
        tags=['daily'],
        meta={'partition_start': '2022-09-01'},
        pre_hook=[
            "{% if is_incremental() %}delete from {{ this }}"
            ~ "{% if var('min_date', none) %} where event_date >= cast('{{ var('min_date') }}' as date)"
            ~ " and event_date < cast('{{ var('max_date') }}' as date){% endif %}{% endif %}"
        ],
    )
}}

with activities as (
    select
        event_id,
        candidate_id,
        activity_type,
        subject,
        {{ utc_naive('activity_at') }} as activity_at,
        duration_minutes,
        cast({{ utc_naive('activity_at') }} as {{ dtype('date') }}) as event_date
    from {{ ref('stg_salesforce__events') }}
    where activity_at is not null
)

select *
from activities
{% if var('min_date', none) %}
where event_date >= cast('{{ var("min_date") }}' as {{ dtype('date') }})
    and event_date < cast('{{ var("max_date") }}' as {{ dtype('date') }})
{% endif %}
