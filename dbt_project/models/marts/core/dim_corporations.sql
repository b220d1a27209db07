with accounts as (
    select * from {{ ref('stg_salesforce__accounts') }}
),

facility_counts as (
    select
        parent_account_id as corporation_id,
        count(*) as facility_count
    from accounts
    where account_type = 'Medical Facility'
        and parent_account_id is not null
    group by parent_account_id
)

select
    accounts.account_id as corporation_id,
    accounts.account_name as corporation_name,
    accounts.prefecture,
    accounts.city,
    accounts.street as address,
    accounts.postal_code,
    accounts.phone,
    accounts.annual_revenue,
    cast(coalesce(facility_counts.facility_count, 0) as {{ dtype('int') }}) as facility_count,
    accounts.owner_id,
    accounts.created_at,
    accounts.updated_at
from accounts
left join facility_counts
    on facility_counts.corporation_id = accounts.account_id
where accounts.account_type = 'Corporation'
