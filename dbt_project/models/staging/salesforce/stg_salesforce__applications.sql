with source as (
    select * from {{ source('salesforce', 'application__c') }}
),

renamed as (
    select
        cast(id as {{ dtype('string') }}) as application_id,
        cast(candidate__c as {{ dtype('string') }}) as candidate_id,
        cast(job_posting__c as {{ dtype('string') }}) as job_posting_id,
        cast(status__c as {{ dtype('string') }}) as status,
        cast(applied_at__c as {{ dtype('timestamptz') }}) as applied_at,
        cast(status_changed_at__c as {{ dtype('timestamptz') }}) as status_changed_at,
        cast(created_date as {{ dtype('timestamptz') }}) as created_at,
        cast(last_modified_date as {{ dtype('timestamptz') }}) as updated_at,
        cast(system_modstamp as {{ dtype('timestamptz') }}) as system_modstamp
    from source
    where not is_deleted
)

select * from renamed
