with applications as (
    select * from {{ ref('stg_salesforce__applications') }}
),

status_history as (
    select
        application_id,
        count(*) as status_change_count,
        min(changed_at) as first_status_change_at,
        max(changed_at) as last_status_change_at
    from {{ ref('stg_salesforce__application_status_history') }}
    group by application_id
),

postings as (
    select job_posting_id, facility_id, placement_fee
    from {{ ref('stg_salesforce__job_postings') }}
),

facilities as (
    select facility_id, corporation_id
    from {{ ref('dim_facilities') }}
)

select
    applications.application_id,
    applications.candidate_id,
    applications.job_posting_id,
    postings.facility_id,
    facilities.corporation_id,
    applications.status,
    applications.status = 'Hired' as is_hired,
    case when applications.status = 'Hired' then postings.placement_fee end as placement_fee,
    applications.applied_at,
    applications.status_changed_at,
    cast(coalesce(status_history.status_change_count, 0) as {{ dtype('int') }}) as status_change_count,
    status_history.first_status_change_at,
    status_history.last_status_change_at,
    applications.created_at,
    applications.updated_at
from applications
left join postings
    on postings.job_posting_id = applications.job_posting_id
left join facilities
    on facilities.facility_id = postings.facility_id
left join status_history
    on status_history.application_id = applications.application_id
