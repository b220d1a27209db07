-- The app renders "salary_min 〜 salary_max"; an inverted range would show nonsense.
select job_posting_id, salary_min, salary_max
from {{ ref('app_job_postings') }}
where salary_min is null
    or salary_min <= 0
    or salary_max < salary_min
