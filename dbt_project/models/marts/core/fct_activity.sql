-- An activity's WhatId is either an application or a job posting; resolve both to the posting
-- and its facility, so activity can be rolled up per customer.
with events as (
    select * from {{ ref('stg_salesforce__events') }}
),

applications as (
    select application_id, job_posting_id
    from {{ ref('stg_salesforce__applications') }}
),

postings as (
    select job_posting_id, facility_id
    from {{ ref('stg_salesforce__job_postings') }}
),

resolved as (
    select
        events.*,
        applications.application_id,
        coalesce(applications.job_posting_id, direct_postings.job_posting_id) as job_posting_id,
        case
            when applications.application_id is not null then 'application'
            when direct_postings.job_posting_id is not null then 'job_posting'
        end as related_record_type
    from events
    left join applications
        on applications.application_id = events.related_record_id
    left join postings as direct_postings
        on direct_postings.job_posting_id = events.related_record_id
)

select
    resolved.event_id,
    resolved.candidate_id,
    resolved.related_record_type,
    resolved.application_id,
    resolved.job_posting_id,
    postings.facility_id,
    resolved.activity_type,
    resolved.subject,
    resolved.activity_at,
    resolved.duration_minutes,
    resolved.created_at
from resolved
left join postings
    on postings.job_posting_id = resolved.job_posting_id
