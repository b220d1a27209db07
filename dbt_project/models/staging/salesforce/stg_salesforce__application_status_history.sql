with source as (
    select * from {{ source('salesforce', 'application__history') }}
),

renamed as (
    select
        cast(id as {{ dtype('string') }}) as status_change_id,
        cast(parent_id as {{ dtype('string') }}) as application_id,
        cast(old_value as {{ dtype('string') }}) as old_status,
        cast(new_value as {{ dtype('string') }}) as new_status,
        cast(created_date as {{ dtype('timestamptz') }}) as changed_at
    from source
    where not is_deleted
        and lower(field) = 'status__c'
)

select * from renamed
