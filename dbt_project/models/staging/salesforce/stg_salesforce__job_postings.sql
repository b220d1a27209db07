with source as (
    select * from {{ source('salesforce', 'job_posting__c') }}
),

renamed as (
    select
        cast(id as {{ dtype('string') }}) as job_posting_id,
        cast(account__c as {{ dtype('string') }}) as facility_id,
        cast(name as {{ dtype('string') }}) as title,
        cast(occupation__c as {{ dtype('string') }}) as occupation,
        cast(employment_type__c as {{ dtype('string') }}) as employment_type,
        cast(salary_min__c as {{ dtype('int') }}) as salary_min,
        cast(salary_max__c as {{ dtype('int') }}) as salary_max,
        cast(salary_unit__c as {{ dtype('string') }}) as salary_unit,
        cast(status__c as {{ dtype('string') }}) as status,
        cast(description__c as {{ dtype('string') }}) as description,
        cast(published_at__c as {{ dtype('timestamptz') }}) as published_at,
        cast(placement_fee__c as {{ dtype('fee') }}) as placement_fee,
        cast(created_date as {{ dtype('timestamptz') }}) as created_at,
        cast(last_modified_date as {{ dtype('timestamptz') }}) as updated_at,
        cast(system_modstamp as {{ dtype('timestamptz') }}) as system_modstamp
    from source
    where not is_deleted
)

select * from renamed
