select
    facility_id,
    corporation_id,
    facility_name as name,
    facility_type,
    prefecture,
    city,
    address,
    postal_code,
    phone,
    bed_count,
    latitude,
    longitude,
    {{ utc_naive('created_at') }} as created_at,
    {{ utc_naive('updated_at') }} as updated_at
from {{ ref('dim_facilities') }}
