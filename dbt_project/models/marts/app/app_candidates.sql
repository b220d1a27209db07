select
    candidate_id,
    family_name,
    given_name,
    family_name_kana,
    given_name_kana,
    email,
    mobile_phone as phone,
    birth_date,
    prefecture,
    desired_occupation,
    years_of_experience,
    is_active,
    {{ utc_naive('created_at') }} as registered_at,
    {{ utc_naive('updated_at') }} as updated_at
from {{ ref('stg_salesforce__candidates') }}
