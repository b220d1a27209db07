-- Only applications whose candidate and posting are in the app, so both foreign keys hold.
select
    applications.application_id,
    applications.candidate_id,
    applications.job_posting_id,
    lower(applications.status) as status,
    {{ utc_naive('applications.applied_at') }} as applied_at,
    {{ utc_naive('applications.status_changed_at') }} as status_changed_at,
    applications.status_change_count,
    {{ utc_naive('applications.updated_at') }} as updated_at
from {{ ref('fct_applications') }} as applications
inner join {{ ref('app_candidates') }} as candidates
    on candidates.candidate_id = applications.candidate_id
inner join {{ ref('app_job_postings') }} as postings
    on postings.job_posting_id = applications.job_posting_id
