-- Only postings of facilities the app knows, so the foreign key holds in the app database.
select
    postings.job_posting_id,
    postings.facility_id,
    postings.title,
    postings.occupation,
    postings.employment_type,
    postings.salary_min,
    postings.salary_max,
    postings.salary_unit,
    lower(postings.status) as status,
    postings.description,
    postings.published_at,
    {{ utc_naive('postings.updated_at') }} as updated_at
from {{ ref('stg_salesforce__job_postings') }} as postings
inner join {{ ref('app_facilities') }} as facilities
    on facilities.facility_id = postings.facility_id
