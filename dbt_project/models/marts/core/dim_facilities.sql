with accounts as (
    select * from {{ ref('stg_salesforce__accounts') }}
),

corporations as (
    select * from {{ ref('dim_corporations') }}
)

select
    accounts.account_id as facility_id,
    -- only a live corporation counts as the owner; a dangling parent becomes NULL
    corporations.corporation_id,
    corporations.corporation_name,
    accounts.account_name as facility_name,
    accounts.facility_type,
    accounts.prefecture,
    accounts.city,
    accounts.street as address,
    accounts.postal_code,
    accounts.phone,
    accounts.bed_count,
    accounts.latitude,
    accounts.longitude,
    accounts.annual_revenue,
    accounts.owner_id,
    accounts.created_at,
    accounts.updated_at
from accounts
left join corporations
    on corporations.corporation_id = accounts.parent_account_id
where accounts.account_type = 'Medical Facility'
