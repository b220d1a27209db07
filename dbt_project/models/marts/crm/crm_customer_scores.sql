-- Churn risk per facility account for the sales team. "Now" is the latest activity in the
-- warehouse, not the wall clock, so a rebuild of the same data gives the same scores.
with facilities as (
    select facility_id, facility_name, prefecture
    from {{ ref('dim_facilities') }}
),

hires as (
    select
        facility_id,
        count(case when is_hired then 1 end) as hires_count,
        sum(placement_fee) as lifetime_value
    from {{ ref('fct_applications') }}
    where facility_id is not null
    group by facility_id
),

open_postings as (
    select
        facility_id,
        count(case when status = 'Open' then 1 end) as open_job_postings
    from {{ ref('stg_salesforce__job_postings') }}
    group by facility_id
),

last_activity as (
    select
        facility_id,
        max(activity_at) as last_activity_at
    from {{ ref('fct_activity') }}
    where facility_id is not null
    group by facility_id
),

as_of as (
    select {{ utc_naive('max(activity_at)') }} as as_of_at
    from {{ ref('fct_activity') }}
),

measured as (
    select
        facilities.facility_id as account_id,
        facilities.facility_name as account_name,
        facilities.prefecture,
        cast(coalesce(hires.lifetime_value, 0) as {{ dtype('money') }}) as lifetime_value,
        cast(coalesce(hires.hires_count, 0) as {{ dtype('int') }}) as hires_count,
        cast(coalesce(open_postings.open_job_postings, 0) as {{ dtype('int') }}) as open_job_postings,
        {{ utc_naive('last_activity.last_activity_at') }} as last_activity_at,
        cast(
            {{ dbt.datediff(utc_naive('last_activity.last_activity_at'), 'as_of.as_of_at', 'day') }}
            as {{ dtype('int') }}
        ) as days_since_last_activity
    from facilities
    left join hires on hires.facility_id = facilities.facility_id
    left join open_postings on open_postings.facility_id = facilities.facility_id
    left join last_activity on last_activity.facility_id = facilities.facility_id
    cross join as_of
),

scored as (
    select
        *,
        cast(round(
            -- silence weighs most: no activity for 180 days (or ever) is full risk
            0.6 * case
                when days_since_last_activity is null then 1.0
                else least(days_since_last_activity / 180.0, 1.0)
            end
            -- customers who hired through us churn less
            + 0.25 * (1.0 / (1 + hires_count))
            -- no open posting means no current business
            + 0.15 * case when open_job_postings = 0 then 1.0 else 0.0 end
        , 4) as {{ dtype('double') }}) as churn_score
    from measured
)

select
    account_id,
    account_name,
    prefecture,
    lifetime_value,
    hires_count,
    open_job_postings,
    last_activity_at,
    days_since_last_activity,
    churn_score,
    case
        when churn_score >= 0.6 then 'high'
        when churn_score >= 0.3 then 'medium'
        else 'low'
    end as score_band
from scored
