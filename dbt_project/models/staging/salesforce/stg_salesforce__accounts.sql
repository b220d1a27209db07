with source as (
    select * from {{ source('salesforce', 'account') }}
),

renamed as (
    select
        cast(id as {{ dtype('string') }}) as account_id,
        cast(name as {{ dtype('string') }}) as account_name,
        cast(type as {{ dtype('string') }}) as account_type,
        cast(facility_type__c as {{ dtype('string') }}) as facility_type,
        cast(parent_id as {{ dtype('string') }}) as parent_account_id,
        cast(billing_state as {{ dtype('string') }}) as prefecture,
        cast(billing_city as {{ dtype('string') }}) as city,
        cast(billing_street as {{ dtype('string') }}) as street,
        cast(billing_postal_code as {{ dtype('string') }}) as postal_code,
        cast(phone as {{ dtype('string') }}) as phone,
        cast(number_of_beds__c as {{ dtype('int') }}) as bed_count,
        cast(annual_revenue as {{ dtype('money') }}) as annual_revenue,
        cast(latitude as {{ dtype('double') }}) as latitude,
        cast(longitude as {{ dtype('double') }}) as longitude,
        cast(owner_id as {{ dtype('string') }}) as owner_id,
        cast(created_date as {{ dtype('timestamptz') }}) as created_at,
        cast(last_modified_date as {{ dtype('timestamptz') }}) as updated_at,
        cast(system_modstamp as {{ dtype('timestamptz') }}) as system_modstamp
    from source
    where not is_deleted
)

select * from renamed
